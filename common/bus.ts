/**
 * The invalidation bus: every write the backend commits, and every PURGE/BAN a
 * cache node accepts, becomes one event that reaches every cache node and every
 * frontend render cache.
 *
 * Three transports behind one interface:
 * - `RedisStreamBus` (cluster): a Redis Stream; ids are durable, so a node that
 *   reconnects replays from the last id it saw, and a node whose last id was
 *   trimmed away (or whose Redis restarted empty) is told about the gap so it
 *   can ban everything it stored before it (design §2.3).
 * - `IpcBus` + `relayBus` (one machine, no Redis): children talk to their parent
 *   over the Node IPC channel; the parent relays each event to all of its
 *   children and up to its own parent, so the whole process tree is one bus.
 * - `MemoryBus`: the root of that tree, and tests.
 */
import { EventEmitter } from 'node:events'
import type { ChildProcess } from 'node:child_process'
import type { Worker } from 'node:cluster'
import { Redis } from 'ioredis'
import { BusPosition } from './bus-position.js'

/** What to invalidate. */
export type BusEvent =
  /**
   * Pages tagged with any of these surrogate keys; `soft` marks them stale
   * instead of dropping them. `lsn` (backend writes): the primary's WAL
   * position at or after the commit; a page rendered from a replica that has
   * not replayed it yet must not be cached again (design §2.4).
   */
  | { kind: 'keys', keys: string[], soft?: boolean, lsn?: string }
  /** One URL path (all variants), optionally restricted to a host. */
  | { kind: 'url', path: string, host?: string, soft?: boolean }
  /** Every object whose URL (path and query) matches the regular expression. */
  | { kind: 'ban', pattern: string }

export interface BusMessage {
  /** Transport id; monotonic per bus. */
  id: string
  /** Milliseconds since the epoch when the event was published. */
  at: number
  event: BusEvent
}

export type BusHandler = (message: BusMessage) => void

export interface SubscribeOptions {
  /**
   * Called when events may have been missed (a reconnect after the stream was
   * trimmed, or Redis restarted empty). `since` is the time of the last event
   * that was seen: everything stored before it must be treated as invalid.
   */
  onGap?: (since: number) => void
  /**
   * Called once the subscription knows where it starts: the id of the newest
   * event that existed when it began (events up to it are not delivered; '0'
   * or '0-0' when there were none). With the ids of the events delivered
   * afterwards it gives the subscriber's bus position (bus-position.ts).
   */
  onStart?: (position: string) => void
}

export interface Bus {
  readonly name: string
  publish (event: BusEvent): Promise<string>
  subscribe (handler: BusHandler, options?: SubscribeOptions): () => void
  close (): Promise<void>
}

export function isBusEvent (value: unknown): value is BusEvent {
  if (value === null || typeof value !== 'object') return false
  const v = value as Record<string, unknown>
  switch (v.kind) {
    case 'keys': return Array.isArray(v.keys) && v.keys.every((k) => typeof k === 'string') && (v.lsn === undefined || typeof v.lsn === 'string')
    case 'url': return typeof v.path === 'string' && (v.host === undefined || typeof v.host === 'string')
    case 'ban': return typeof v.pattern === 'string'
    default: return false
  }
}

/** In-process bus: the root of the one-machine tree, and tests. */
export class MemoryBus implements Bus {
  readonly name = 'memory'
  readonly #emitter = new EventEmitter()
  #seq = 0
  /** Newest id delivered here, or the start position a relay told us. */
  readonly #position = new BusPosition()
  constructor () { this.#emitter.setMaxListeners(0) }

  /** Newest position known here ('0' before any event). */
  get position (): string { return this.#position.current ?? '0' }

  async publish (event: BusEvent): Promise<string> {
    const message: BusMessage = { id: String(++this.#seq), at: Date.now(), event }
    this.deliver(message)
    return message.id
  }

  /** Hands an already-numbered message to local subscribers (used by relays). */
  deliver (message: BusMessage): void {
    this.#position.advance(message.id)
    this.#emitter.emit('message', message)
  }

  /** A relay's child learns where the tree's bus stands when it joins. */
  startAt (position: string): void { this.#position.advance(position) }

  subscribe (handler: BusHandler, options: SubscribeOptions = {}): () => void {
    const listener = (m: BusMessage) => {
      try { handler(m) } catch { /* a failing subscriber must not break delivery to the others */ }
    }
    this.#emitter.on('message', listener)
    // Delivery is synchronous: the subscriber starts exactly at the newest id delivered so far.
    options.onStart?.(this.position)
    return () => { this.#emitter.off('message', listener) }
  }

  async close (): Promise<void> { this.#emitter.removeAllListeners() }
}

const TAG = '__flashcrowdBus'
interface IpcEnvelope { [TAG]: 'publish' | 'message' | 'ack' | 'hello' | 'position', event?: BusEvent, message?: BusMessage, ref?: number, id?: string, error?: string }
type IpcEnd = Pick<NodeJS.Process, 'send' | 'on' | 'off'> & { connected?: boolean }

function isEnvelope (m: unknown): m is IpcEnvelope {
  return m !== null && typeof m === 'object' && TAG in (m as object)
}

/**
 * Child side of the embedded bus: publishes go up to the parent, which numbers
 * them and sends them back down to every child (this one included).
 */
export class IpcBus implements Bus {
  readonly name = 'ipc'
  readonly #local = new MemoryBus()
  readonly #end: IpcEnd
  readonly #pending = new Map<number, (id: string | undefined, error?: string) => void>()
  #ref = 0
  /** Whether the parent told us where the tree's bus stood when we joined. */
  #started = false
  readonly #waitingForStart = new Set<(position: string) => void>()
  readonly #onMessage = (m: unknown) => {
    if (!isEnvelope(m)) return
    if (m[TAG] === 'ack' && m.ref !== undefined) {
      this.#pending.get(m.ref)?.(m.id, m.error)
      this.#pending.delete(m.ref)
    } else if (m[TAG] === 'message' && m.message) {
      this.#local.deliver(m.message)
    } else if (m[TAG] === 'position' && typeof m.id === 'string' && !this.#started) {
      this.#started = true
      this.#local.startAt(m.id)
      for (const cb of this.#waitingForStart) cb(this.#local.position)
      this.#waitingForStart.clear()
    }
  }

  constructor (end: IpcEnd = process) {
    if (typeof end.send !== 'function') throw new Error('IpcBus needs an IPC channel: start this process from the flashcrowd supervisor or set REDIS_URL')
    this.#end = end
    end.on('message', this.#onMessage)
    // Asked, not pushed: a message sent before this listener existed would be lost.
    const hello: IpcEnvelope = { [TAG]: 'hello' }
    try { end.send!(hello, undefined, {}, () => {}) } catch { /* no parent any more: the process is going away */ }
  }

  publish (event: BusEvent): Promise<string> {
    const ref = ++this.#ref
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => { this.#pending.delete(ref); reject(new Error('bus: the parent process did not acknowledge the event')) }, 5000)
      timer.unref()
      this.#pending.set(ref, (id, error) => {
        clearTimeout(timer)
        if (id === undefined) reject(new Error(`bus: ${error ?? 'publish failed'}`))
        else resolve(id)
      })
      const envelope: IpcEnvelope = { [TAG]: 'publish', event, ref }
      this.#end.send!(envelope, undefined, {}, (err: Error | null) => {
        if (err) { clearTimeout(timer); this.#pending.delete(ref); reject(err) }
      })
    })
  }

  subscribe (handler: BusHandler, options: SubscribeOptions = {}): () => void {
    const unsubscribe = this.#local.subscribe(handler)
    const onStart = options.onStart
    if (onStart) {
      if (this.#started) onStart(this.#local.position)
      else this.#waitingForStart.add(onStart)
    }
    return () => { if (onStart) this.#waitingForStart.delete(onStart); unsubscribe() }
  }

  async close (): Promise<void> {
    this.#end.off('message', this.#onMessage)
    this.#waitingForStart.clear()
    await this.#local.close()
  }
}

/**
 * Parent side: relays `bus` to child processes (or cluster workers). Events a
 * child publishes go through `bus.publish` (so they reach the parent's own
 * parent, or Redis); everything `bus` delivers goes down to every child. The
 * child that published learns the id through `ref`.
 */
export function relayBus (bus: Bus) {
  const children = new Set<ChildProcess | Worker>()
  const send = (child: ChildProcess | Worker, envelope: IpcEnvelope) => {
    const connected = 'isConnected' in child ? child.isConnected() : child.connected
    if (!connected) return
    try { child.send(envelope as never) } catch { /* the child is going away; the supervisor notices */ }
  }
  // Where the tree's bus stands, so a child that joins learns its start position.
  const position = new BusPosition()
  let started = false
  const waiting = new Set<ChildProcess | Worker>()
  const unsubscribe = bus.subscribe((message) => {
    position.advance(message.id)
    for (const child of children) send(child, { [TAG]: 'message', message })
  }, {
    onStart: (id) => {
      position.advance(id)
      started = true
      for (const child of waiting) send(child, { [TAG]: 'position', id: position.current ?? id })
      waiting.clear()
    }
  })
  return {
    attach (child: ChildProcess | Worker) {
      children.add(child)
      const onMessage = (m: unknown) => {
        if (!isEnvelope(m)) return
        if (m[TAG] === 'hello') {
          // Sent on the channel that carries the messages, so the child sees every event after this position.
          if (started) send(child, { [TAG]: 'position', id: position.current ?? '0' })
          else waiting.add(child)
          return
        }
        if (m[TAG] !== 'publish' || !isBusEvent(m.event)) return
        const ref = m.ref
        bus.publish(m.event).then(
          (id) => { send(child, { [TAG]: 'ack', ref, id }) },
          (err: Error) => { send(child, { [TAG]: 'ack', ref, error: err.message }) }
        )
      }
      child.on('message', onMessage)
      child.once('exit', () => { children.delete(child); waiting.delete(child); child.off('message', onMessage) })
    },
    close () { unsubscribe(); children.clear(); waiting.clear() }
  }
}

export interface RedisStreamBusOptions {
  url: string
  /** Namespace of the stream key (REDIS_PREFIX): tiers sharing a Redis keep their events apart. */
  prefix?: string
  /** Stream key (overrides prefix). */
  stream?: string
  /** Approximate number of events kept for replay after a reconnect. */
  maxLen?: number
  /** How long one XREAD blocks. */
  blockMs?: number
  /** Deadline of one publish. */
  publishTimeoutMs?: number
}

function idTime (id: string): number { return Number(id.split('-')[0]) }
function idLess (a: string, b: string): boolean {
  const [am, as] = a.split('-').map(Number)
  const [bm, bs] = b.split('-').map(Number)
  return am < bm || (am === bm && as < bs)
}

/**
 * Redis Streams transport. Publishing uses one shared connection; each
 * subscription reads with its own blocking connection from the last id it saw.
 */
export class RedisStreamBus implements Bus {
  readonly name = 'redis'
  readonly stream: string
  readonly #url: string
  readonly #maxLen: number
  readonly #blockMs: number
  readonly #pub: Redis
  readonly #readers = new Set<{ stop: () => Promise<void> }>()

  constructor (options: RedisStreamBusOptions) {
    this.#url = options.url
    this.stream = options.stream ?? `${options.prefix ?? 'flashcrowd'}:invalidations`
    this.#maxLen = options.maxLen ?? 100_000
    this.#blockMs = options.blockMs ?? 2000
    // Fail fast when Redis is away: the outbox keeps the event and retries.
    // A Redis that stops answering fails the publish within a second, so the
    // outbox rolls back and retries instead of holding its row locks.
    this.#pub = new Redis(this.#url, { lazyConnect: false, maxRetriesPerRequest: 1, enableOfflineQueue: false, commandTimeout: options.publishTimeoutMs ?? 1000 })
    this.#pub.on('error', () => { /* reconnects by itself; publish() reports failures to its caller */ })
  }

  async publish (event: BusEvent): Promise<string> {
    const id = await this.#pub.xadd(this.stream, 'MAXLEN', '~', String(this.#maxLen), '*', 'e', JSON.stringify(event), 'at', String(Date.now()))
    return id as string
  }

  subscribe (handler: BusHandler, options: SubscribeOptions = {}): () => void {
    const conn = new Redis(this.#url, { maxRetriesPerRequest: null, enableOfflineQueue: true })
    conn.on('error', () => { /* retried by the read loop */ })
    let running = true
    let lastId: string | null = null
    // ioredis replays a blocked XREAD on its own after reconnecting, so the
    // loop may never see an error: remember reconnects to check for a gap.
    let readyOnce = false
    let reconnected = false
    conn.on('ready', () => { if (readyOnce) reconnected = true; readyOnce = true })
    const loop = (async () => {
      while (running) {
        try {
          if (lastId === null) {
            // Start from the newest entry: a fresh subscriber has nothing stored yet.
            const info = await conn.xinfo('STREAM', this.stream).catch(() => null) as unknown[] | null
            lastId = info ? String(fieldOf(info, 'last-generated-id') ?? '0-0') : '0-0'
            try { options.onStart?.(lastId) } catch { /* the subscriber's problem, not the stream's */ }
          } else {
            await this.#checkGap(conn, lastId, options)
          }
          while (running) {
            const res = await conn.xread('COUNT', 1000, 'BLOCK', this.#blockMs, 'STREAMS', this.stream, lastId) as Array<[string, Array<[string, string[]]>]> | null
            if (!running) break
            if (reconnected) {
              reconnected = false
              await this.#checkGap(conn, lastId, options)
            }
            if (!res) continue
            for (const [, entries] of res) {
              for (const [id, fields] of entries) {
                lastId = id
                const message = parseEntry(id, fields)
                if (message) {
                  try { handler(message) } catch { /* one bad handler must not stop the stream */ }
                }
              }
            }
          }
        } catch {
          if (!running) break
          await new Promise((resolve) => setTimeout(resolve, 250))
        }
      }
    })()
    const reader = {
      stop: async () => {
        running = false
        conn.disconnect()
        await loop
      }
    }
    this.#readers.add(reader)
    return () => { this.#readers.delete(reader); void reader.stop() }
  }

  /**
   * After an error the reader may have missed events. If the stream no longer
   * holds the entry after `lastId` (trimmed), or was recreated with lower ids
   * (Redis restarted without persistence), report a gap.
   */
  async #checkGap (conn: Redis, lastId: string, options: SubscribeOptions): Promise<void> {
    const info = await conn.xinfo('STREAM', this.stream).catch((err: Error) => {
      if (/no such key/i.test(err.message)) return null
      throw err
    }) as unknown[] | null
    const lastGenerated = info ? String(fieldOf(info, 'last-generated-id') ?? '0-0') : '0-0'
    const first = info ? fieldOf(info, 'first-entry') as [string, string[]] | null : null
    const trimmed = first !== null && first !== undefined && idLess(lastId, first[0]) && lastId !== '0-0'
    const reset = idLess(lastGenerated, lastId)
    if (trimmed || reset) {
      options.onGap?.(idTime(lastId))
    }
  }

  async close (): Promise<void> {
    await Promise.all([...this.#readers].map((r) => r.stop()))
    this.#readers.clear()
    this.#pub.disconnect()
  }
}

function fieldOf (flat: unknown[], name: string): unknown {
  for (let i = 0; i < flat.length; i += 2) if (flat[i] === name) return flat[i + 1]
  return undefined
}

function parseEntry (id: string, fields: string[]): BusMessage | null {
  let raw: string | undefined
  let at = idTime(id)
  for (let i = 0; i < fields.length; i += 2) {
    if (fields[i] === 'e') raw = fields[i + 1]
    else if (fields[i] === 'at') at = Number(fields[i + 1]) || at
  }
  if (raw === undefined) return null
  try {
    const event = JSON.parse(raw) as unknown
    return isBusEvent(event) ? { id, at, event } : null
  } catch {
    return null
  }
}

/**
 * The bus a role process should use: Redis Streams when REDIS_URL is set; the
 * embedded IPC bus when this process was started by the one-machine
 * supervisor; otherwise an in-process bus (a role running alone).
 */
export function createBus (options: { redisUrl?: string, prefix?: string }): Bus {
  if (options.redisUrl) return new RedisStreamBus({ url: options.redisUrl, prefix: options.prefix })
  if (typeof process.send === 'function') return new IpcBus(process)
  return new MemoryBus()
}
