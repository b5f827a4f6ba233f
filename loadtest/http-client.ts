// The generator's hot loop: n keep-alive HTTP/1.1 connections, each sending
// its next request as soon as the previous answer is complete (one in flight
// per connection: no pipelining), optionally held to a quota of requests
// per second and a total per connection (the open model, stages.ts).
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
// timer per request; the per-second quota is one timer per instance too.
import { connect as netConnect, type Socket } from 'node:net'
import { connect as tlsConnect } from 'node:tls'
import type { RequestMeta } from './group.js'
import { HttpFramingError, ResponseReader } from './http-response.js'
import type { Recorder } from './recorder.js'
import type { WireRequest } from './requests.js'

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
  /** open model: requests per connection per second, counted from the instance's start */
  connectionRate?: number
  /** open model: requests per connection in all; a connection that sent them stops once answered */
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
  /** requests sent in this second of the instance (open model) */
  thisSecond = 0
  sent = 0
  /** waiting for the next second's quota */
  paused = false
  done = false
  readonly reader = new ResponseReader()

  constructor (readonly run: ConnectionsRun) {}
}

/** One instance: its connections, until its duration is over, every connection is done, or the signal aborts. */
class ConnectionsRun {
  readonly #o: ConnectionsOptions
  readonly #target: Target
  readonly #conns: Connection[] = []
  readonly #timeoutMs: number
  readonly #rate: number
  readonly #max: number
  #stopped = false
  /** connections that sent their whole quota (open model) */
  #done = 0
  #resolve: () => void = () => {}
  readonly finished: Promise<void>
  readonly #timers: NodeJS.Timeout[] = []

  constructor (o: ConnectionsOptions) {
    this.#o = o
    this.#target = targetOf(o.url)
    this.#timeoutMs = o.timeout * 1000
    this.#rate = o.connectionRate ?? 0
    this.#max = o.maxConnectionRequests ?? 0
    this.finished = new Promise(resolve => { this.#resolve = resolve })
  }

  start (): void {
    const { signal } = this.#o
    if (signal?.aborted) return this.stop()
    signal?.addEventListener('abort', this.stop, { once: true })
    this.#timers.push(setTimeout(this.stop, Math.max(0, this.#o.duration * 1000)))
    // answers older than the timeout are looked for a few times per timeout
    this.#timers.push(setInterval(() => this.#sweep(), Math.max(20, Math.min(250, this.#timeoutMs / 4))))
    if (this.#rate > 0) this.#timers.push(setInterval(() => this.#nextSecond(), 1000))
    for (let i = 0; i < this.#o.connections; i++) {
      const c = new Connection(this)
      this.#conns.push(c)
      this.#open(c)
      this.#send(c)
    }
  }

  readonly stop = (): void => {
    if (this.#stopped) return
    this.#stopped = true
    this.#o.signal?.removeEventListener('abort', this.stop)
    for (const t of this.#timers) clearTimeout(t)
    for (const c of this.#conns) this.#close(c)
    this.#resolve()
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

  #send (c: Connection): void {
    if (this.#stopped || c.done) return
    if (this.#max > 0 && c.sent >= this.#max) {
      c.done = true
      this.#close(c)
      if (++this.#done === this.#conns.length) this.stop()
      return
    }
    if (this.#rate > 0 && c.thisSecond >= this.#rate) {
      c.paused = true
      return
    }
    const w = this.#o.source.nextWire()
    c.meta = w.meta
    c.reader.reset()
    c.sent++
    c.thisSecond++
    c.sentAt = performance.now()
    c.socket!.write(w.buffer)
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
      this.#o.recorder.transportError(c.meta, false)
      this.#replace(c)
      return
    }
    if (end < 0) return
    this.#answered(c)
    if (end < n) this.#replace(c)
    else if (c.reader.closeAfter) this.#replace(c)
    else this.#send(c)
  }

  #answered (c: Connection): void {
    const r = c.reader
    const cache = r.cache
    this.#o.recorder.response(c.meta!, r.status, r.bytes, performance.now() - c.sentAt, cache.state, cache.collapsed)
    c.meta = null
  }

  /** The socket errored or closed: a response read until close is complete; one cut short is a transport error. */
  #onClose (c: Connection, s: Socket, err: Error | null): void {
    if (c.socket !== s) return
    c.socket = null
    s.destroy()
    if (this.#stopped) return
    if (c.meta !== null) {
      if (err === null && c.reader.finishAtClose()) this.#answered(c)
      else {
        this.#o.recorder.transportError(c.meta, false)
        c.meta = null
      }
    }
    // a connection refused again at once would spin: the next attempt waits for the next turn of the loop
    setImmediate(() => this.#reopen(c))
  }

  #reopen (c: Connection): void {
    if (this.#stopped || c.done || c.socket !== null) return
    this.#open(c)
    this.#send(c)
  }

  #replace (c: Connection): void {
    this.#close(c)
    this.#reopen(c)
  }

  #sweep (): void {
    const now = performance.now()
    for (const c of this.#conns) {
      if (c.meta !== null && now - c.sentAt > this.#timeoutMs) {
        this.#o.recorder.transportError(c.meta, true)
        this.#replace(c)
      }
    }
  }

  #nextSecond (): void {
    for (const c of this.#conns) {
      c.thisSecond = 0
      if (c.paused) {
        c.paused = false
        this.#send(c)
      }
    }
  }
}

/** Runs `connections` connections against `url` for `duration` seconds; resolves when they are all closed. */
export function runConnections (o: ConnectionsOptions): Promise<void> {
  const run = new ConnectionsRun(o)
  run.start()
  return run.finished
}
