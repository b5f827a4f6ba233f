// The generator's hot loop: keep-alive HTTP/1.1 connections, one request in
// flight per connection (no pipelining).
// - Closed model: n connections, each sending its next request as soon as
//   the previous answer is complete.
// - Open model (`arrivals`): requests leave on a clock (arrivals.ts), each
//   on a free connection, opening one more when none is free, up to the
//   step's cap (as k6's arrival-rate executors add VUs up to maxVUs). An
//   arrival with no connection to go on waits for the first one freed and is
//   sent late; one that waited longer than the timeout is dropped (k6's
//   dropped_iterations). Every latency is counted from the arrival's
//   intended time, as wrk2 does, so a stall of the target shows in full
//   however few connections carry the rate: no coordinated omission, and
//   nothing for HDR to guess.
//
// autocannon spent most of a worker's time on itself (a JavaScript HTTP
// parser building header lists, a body string per response, a stream
// 'data' Buffer per read, a timer re-armed per request), so the loop is a
// small raw `net` client instead; per request it costs:
// - one write of a prepared Buffer (a page read's bytes are built once, in
//   requests.ts);
// - reads into one buffer shared by every connection of the thread
//   (`onread`: no Buffer per read, no stream machinery);
// - the response framed and counted from its bytes (http-response.ts):
//   status, bytes and the cache outcome of every response, none sampled;
// - two clock reads (send, answer) and one HDR record (recorder.ts).
// Timeouts are one sweep timer per instance over the connections, not a
// timer per request; the open model's clock is one timer per instance too.
import { connect as netConnect, type Socket } from 'node:net'
import { connect as tlsConnect } from 'node:tls'
import type { ArrivalClock } from './arrivals.js'
import type { RequestMeta } from './group.js'
import { HttpFramingError, ResponseReader } from './http-response.js'
import type { Recorder } from './recorder.js'
import type { WireRequest } from './requests.js'

/** An arrival sent this long after its intended time counts as late (ms): well above timer jitter. */
export const LATE_MS = 10

export interface RequestSource { nextWire: () => WireRequest }

export interface ConnectionsOptions {
  url: string
  connections: number
  /** seconds; the instance stops then, dropping answers still in flight */
  duration: number
  /** seconds before a request counts as timed out (its connection is replaced) */
  timeout: number
  source: RequestSource
  recorder: Recorder
  /**
   * Open model: the arrivals and where their clock starts (epoch ms, the
   * run's common start); `connections` are then opened up front and more as
   * needed. The instance ends once every arrival is answered, dropped or
   * timed out (or at `duration`, whichever is first).
   */
  arrivals?: { clock: ArrivalClock, startAt: number }
  /**
   * Closed model: requests per connection in all (autocannon's --amount, split
   * between the connections); a connection that sent them stops once answered,
   * and the instance ends when every connection has.
   */
  maxConnectionRequests?: number
  signal?: AbortSignal
}

/** Reads of every connection of this thread land here; nothing keeps a view of it past the callback. */
const READ_BUFFER = Buffer.allocUnsafe(256 * 1024)

interface Target { host: string, port: number, tls: boolean, servername: string | undefined }

function targetOf (url: string): Target {
  const u = new URL(url)
  const tls = u.protocol === 'https:'
  const host = u.hostname.replace(/^\[|\]$/g, '')
  return { host, port: Number(u.port) || (tls ? 443 : 80), tls, servername: tls && !/^[\d.]+$|:/.test(host) ? host : undefined }
}

class Connection {
  socket: Socket | null = null
  /** the request in flight, null when none */
  meta: RequestMeta | null = null
  sentAt = 0
  /** when the request in flight was meant to leave: latencies count from here (sentAt in the closed model) */
  intendedAt = 0
  /** open model: the stage of the arrival in flight (the recorder's current one in the closed model) */
  stage = -1
  /** open model: waiting for an arrival */
  idle = false
  /** closed model: requests sent, and whether its share of --amount is all answered */
  sent = 0
  done = false
  readonly reader = new ResponseReader()

  constructor (readonly run: ConnectionsRun) {}
}

/** One instance: its connections, until its duration is over, its work is done, or the signal aborts. */
class ConnectionsRun {
  readonly #o: ConnectionsOptions
  readonly #target: Target
  readonly #conns: Connection[] = []
  readonly #timeoutMs: number
  #stopped = false
  #resolve: () => void = () => {}
  readonly finished: Promise<void>
  readonly #timers: NodeJS.Timeout[] = []
  // open model
  readonly #clock: ArrivalClock | null
  /** the clock's zero on performance.now() */
  readonly #zero: number
  #clockTimer: NodeJS.Timeout | null = null
  readonly #idle: Connection[] = []
  /** arrivals due with no connection to go on, oldest first (from #head on) */
  readonly #waiting: Array<{ w: WireRequest, at: number, stage: number }> = []
  #head = 0
  // closed model with --amount: connections that sent their share
  #done = 0

  constructor (o: ConnectionsOptions) {
    this.#o = o
    this.#target = targetOf(o.url)
    this.#timeoutMs = o.timeout * 1000
    this.#clock = o.arrivals?.clock ?? null
    this.#zero = o.arrivals ? o.arrivals.startAt - performance.timeOrigin : 0
    this.finished = new Promise(resolve => { this.#resolve = resolve })
  }

  start (): void {
    const { signal } = this.#o
    if (signal?.aborted) return this.stop()
    signal?.addEventListener('abort', this.stop, { once: true })
    this.#timers.push(setTimeout(this.stop, Math.max(0, this.#o.duration * 1000)))
    // answers older than the timeout are looked for a few times per timeout
    this.#timers.push(setInterval(() => this.#sweep(), Math.max(20, Math.min(250, this.#timeoutMs / 4))))
    const clock = this.#clock
    if (clock !== null) {
      if (clock.done) return this.stop()
      // connected before the first arrival, so it does not pay the handshake
      for (let i = 0; i < Math.min(this.#o.connections, clock.maxConnections); i++) this.#free(this.#newConnection())
      this.#tick()
      return
    }
    for (let i = 0; i < this.#o.connections; i++) this.#send(this.#newConnection())
  }

  readonly stop = (): void => {
    if (this.#stopped) return
    this.#stopped = true
    this.#o.signal?.removeEventListener('abort', this.stop)
    for (const t of this.#timers) clearTimeout(t)
    if (this.#clockTimer !== null) clearTimeout(this.#clockTimer)
    for (const c of this.#conns) this.#close(c)
    this.#resolve()
  }

  #newConnection (): Connection {
    const c = new Connection(this)
    this.#conns.push(c)
    this.#open(c)
    return c
  }

  #open (c: Connection): void {
    const t = this.#target
    const onread = {
      buffer: READ_BUFFER,
      callback: (n: number, buf: Buffer): boolean => { this.#onData(c, buf, n); return true }
    }
    let s: Socket
    if (t.tls) {
      // a staging tier's certificate is often self-signed: the load is what is measured (as autocannon does)
      s = tlsConnect({ host: t.host, port: t.port, servername: t.servername, rejectUnauthorized: false })
      s.on('data', (chunk: Buffer) => this.#onData(c, chunk, chunk.length))
    } else {
      s = netConnect({ host: t.host, port: t.port, noDelay: true, onread })
    }
    c.socket = s
    s.on('error', (err: Error) => this.#onClose(c, s, err))
    s.on('close', () => this.#onClose(c, s, null))
  }

  #close (c: Connection): void {
    const s = c.socket
    c.socket = null
    c.meta = null
    if (s !== null) s.destroy()
  }

  /** Closed model: the connection's next request, at once. */
  #send (c: Connection): void {
    if (this.#stopped || c.done) return
    const max = this.#o.maxConnectionRequests ?? 0
    if (max > 0 && c.sent >= max) {
      c.done = true
      this.#close(c)
      if (++this.#done === this.#conns.length) this.stop()
      return
    }
    c.sent++
    const w = this.#o.source.nextWire()
    c.meta = w.meta
    c.reader.reset()
    c.sentAt = c.intendedAt = performance.now()
    c.socket!.write(w.buffer)
  }

  /** Open model: the arrivals that are due leave now, on free connections or new ones up to the cap; the rest wait. */
  #tick (): void {
    this.#clockTimer = null
    if (this.#stopped) return
    const clock = this.#clock!
    const { source, recorder } = this.#o
    const now = performance.now()
    let due = this.#zero + clock.at * 1000
    while (due <= now) {
      const w = source.nextWire()
      recorder.arrival(w.meta, clock.stage, performance.timeOrigin + due)
      const c = this.#idle.pop() ?? (this.#conns.length < clock.maxConnections ? this.#newConnection() : undefined)
      // the clock's own lateness (this thread was busy): the generator's limit, not the target's
      if (c !== undefined) this.#dispatch(c, w, due, clock.stage, now, true)
      else this.#waiting.push({ w, at: due, stage: clock.stage })
      if (!clock.advance()) break
      due = this.#zero + clock.at * 1000
    }
    this.#expire(now)
    if (!clock.done) this.#clockTimer = setTimeout(() => this.#tick(), Math.max(0, due - performance.now()))
    else this.#finishIfDone()
  }

  #dispatch (c: Connection, w: WireRequest, at: number, stage: number, now: number, fromClock: boolean): void {
    if (c.socket === null) this.#open(c)
    c.idle = false
    c.meta = w.meta
    c.stage = stage
    c.reader.reset()
    c.intendedAt = at
    c.sentAt = now
    const late = now - at > LATE_MS
    this.#o.recorder.sent(w.meta, stage, late, late && fromClock)
    c.socket!.write(w.buffer)
  }

  /** Arrivals that waited longer than the timeout for a connection are dropped. */
  #expire (now: number): void {
    const q = this.#waiting
    while (this.#head < q.length && now - q[this.#head].at > this.#timeoutMs) {
      const d = q[this.#head++]
      this.#o.recorder.dropped(d.w.meta, d.stage)
    }
    if (this.#head > 1024 && this.#head * 2 > q.length) {
      q.splice(0, this.#head)
      this.#head = 0
    }
  }

  /** Open model: the connection is free; it takes the oldest waiting arrival, or waits for the next. */
  #free (c: Connection): void {
    if (this.#stopped || c.idle) return
    const now = performance.now()
    this.#expire(now)
    if (this.#head < this.#waiting.length) {
      const d = this.#waiting[this.#head++]
      this.#dispatch(c, d.w, d.at, d.stage, now, false)
      return
    }
    c.idle = true
    this.#idle.push(c)
    this.#finishIfDone()
  }

  #finishIfDone (): void {
    if (this.#clock!.done && this.#head >= this.#waiting.length && this.#idle.length === this.#conns.length) this.stop()
  }

  /** The request in flight is over (answered or failed): the connection goes on. */
  #next (c: Connection): void {
    if (this.#clock !== null) this.#free(c)
    else this.#send(c)
  }

  #onData (c: Connection, buf: Buffer, n: number): void {
    if (c.meta === null) {
      // bytes nobody asked for: the connection cannot be trusted to frame the next answer
      if (n > 0) this.#replace(c)
      return
    }
    let end: number
    try {
      end = c.reader.execute(buf, 0, n)
    } catch (err) {
      if (!(err instanceof HttpFramingError)) throw err
      this.#o.recorder.transportError(c.meta, false, c.stage)
      this.#replace(c)
      return
    }
    if (end < 0) return
    this.#answered(c)
    if (end < n) this.#replace(c)
    else if (c.reader.closeAfter) this.#replace(c)
    else this.#next(c)
  }

  #answered (c: Connection): void {
    const r = c.reader
    const cache = r.cache
    this.#o.recorder.response(c.meta!, r.status, r.bytes, performance.now() - c.intendedAt, cache.state, cache.collapsed, c.stage)
    c.meta = null
  }

  /** The socket errored or closed: a response read until close is complete; one cut short is a transport error. */
  #onClose (c: Connection, s: Socket, err: Error | null): void {
    if (c.socket !== s) return
    c.socket = null
    s.destroy()
    if (this.#stopped) return
    // an idle connection the server closed is reopened when an arrival needs it
    if (c.idle) return
    if (c.meta !== null) {
      if (err === null && c.reader.finishAtClose()) this.#answered(c)
      else {
        this.#o.recorder.transportError(c.meta, false, c.stage)
        c.meta = null
      }
    }
    // a connection refused again at once would spin: the next attempt waits for the next turn of the loop
    setImmediate(() => this.#reopen(c))
  }

  #reopen (c: Connection): void {
    if (this.#stopped || c.socket !== null || c.idle || c.done) return
    if (this.#clock === null) this.#open(c)
    this.#next(c)
  }

  #replace (c: Connection): void {
    this.#close(c)
    this.#reopen(c)
  }

  #sweep (): void {
    const now = performance.now()
    for (const c of this.#conns) {
      if (c.meta !== null && now - c.sentAt > this.#timeoutMs) {
        this.#o.recorder.transportError(c.meta, true, c.stage)
        this.#replace(c)
      }
    }
    if (this.#clock !== null) this.#expire(now)
  }
}

/** Runs the connections against `url` until done (see ConnectionsOptions); resolves when they are all closed. */
export function runConnections (o: ConnectionsOptions): Promise<void> {
  const run = new ConnectionsRun(o)
  run.start()
  return run.finished
}
