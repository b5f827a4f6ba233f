/**
 * Request coalescing ("collapsed forwarding", Varnish's waiting list): while
 * one request fetches a key, the others wait for it instead of each going to
 * the origin — the whole point of a cache in a flash crowd. Waiting is capped
 * and timed; an answer that could not be stored leaves a hit-for-miss marker
 * so later requests for that key go straight to the origin instead of queueing
 * behind one another.
 */
import { LRUCache } from 'lru-cache'
import type { Clock } from './freshness.js'
import type { CachedObject } from './store.js'
import type { UpstreamAnswer } from './deliver.js'

export interface Timers {
  setTimeout (fn: () => void, ms: number): unknown
  clearTimeout (handle: unknown): void
}

export const systemTimers: Timers = {
  setTimeout: (fn, ms) => { const t = setTimeout(fn, ms); t.unref(); return t },
  clearTimeout: (h) => { clearTimeout(h as NodeJS.Timeout) }
}

/** A marker's memory: its key (one byte per character from node's parser) and the LRU's per-entry bookkeeping. */
function markerBytes (_until: number, key: string): number { return key.length + MARKER_OVERHEAD }
const MARKER_OVERHEAD = 96

/**
 * How a fetch ended, for the requests that waited on it (issue 23, finding
 * 1). A failure is handed to every waiter — they take the stale copy where
 * one may stand in, or the failure — so a failing or timing-out origin sees
 * one request per attempt, not one per waiter.
 */
export type FlightOutcome =
  /** Something may have been stored: look again. */
  | { kind: 'done' }
  /** A complete object that could not be stored (admission): the waiters whose variant it is take it as is. */
  | { kind: 'object', object: CachedObject }
  /** The fetch failed: no answer, a timeout, or a 5xx (`answer` when its body was read whole, to pass on). */
  | { kind: 'failed', error: Error, upstreamStatus?: number, answer?: { answer: UpstreamAnswer, chunks: Buffer[] } }

export const DONE: FlightOutcome = { kind: 'done' }

export type WakeReason = FlightOutcome | { kind: 'timeout' }
type Waiter = (reason: WakeReason) => void
const TIMEOUT: WakeReason = { kind: 'timeout' }

interface Flight { waiters: Set<Waiter> }

export interface CoalescerOptions {
  maxWaiters: number
  timeoutMs: number
  hitForMissMs: number
  /**
   * Bytes the hit-for-miss markers may hold (keys are up to a URL plus Vary
   * values long, so a count alone would not bound memory, design §2.7).
   * app.ts carves this out of CACHE_MAX_BYTES.
   */
  maxMarkerBytes: number
  clock: Clock
  timers: Timers
}

export class Coalescer {
  readonly #flights = new Map<string, Flight>()
  readonly #markers: LRUCache<string, number>
  readonly #o: CoalescerOptions
  /** Requests that waited on another's fetch (metrics). */
  waits = 0

  constructor (options: CoalescerOptions) {
    if (options.maxWaiters < 1) throw new Error('coalesce: maxWaiters must be at least 1')
    if (options.timeoutMs <= 0) throw new Error('coalesce: timeoutMs must be positive')
    if (!(options.maxMarkerBytes >= 1024)) throw new Error('coalesce: maxMarkerBytes must be at least 1024')
    this.#o = options
    // Oldest markers go first when the budget is spent: losing one only means
    // that key's next requests queue once more behind a fetch.
    this.#markers = new LRUCache<string, number>({ maxSize: options.maxMarkerBytes, sizeCalculation: markerBytes })
  }

  /** Whether someone is fetching `key` right now. */
  busy (key: string): boolean { return this.#flights.has(key) }

  /** Becomes the fetcher of `key` if nobody is; false when a fetch is already under way. */
  lead (key: string): boolean {
    if (this.#flights.has(key)) return false
    this.#flights.set(key, { waiters: new Set() })
    return true
  }

  /**
   * Waits for the current fetch of `key`, for `ms` at most (default: the
   * coalesce timeout). Returns false when nobody is fetching (the caller
   * should lead) or the queue is full ('full').
   */
  wait (key: string, wake: Waiter, ms = this.#o.timeoutMs): boolean | 'full' {
    const flight = this.#flights.get(key)
    if (!flight) return false
    if (flight.waiters.size >= this.#o.maxWaiters) return 'full'
    let timer: unknown
    const waiter: Waiter = (reason) => {
      flight.waiters.delete(waiter)
      if (reason !== TIMEOUT) this.#o.timers.clearTimeout(timer)
      wake(reason)
    }
    timer = this.#o.timers.setTimeout(() => { if (flight.waiters.has(waiter)) waiter(TIMEOUT) }, Math.max(1, ms))
    flight.waiters.add(waiter)
    this.waits++
    return true
  }

  /** Ends the fetch of `key` and wakes everyone who waited on it with how it ended. */
  finish (key: string, outcome: FlightOutcome = DONE): void {
    const flight = this.#flights.get(key)
    if (!flight) return
    this.#flights.delete(key)
    for (const waiter of [...flight.waiters]) waiter(outcome)
  }

  get timeoutMs (): number { return this.#o.timeoutMs }

  /** Marks `key` as hit-for-miss: its last answer could not be stored. */
  markUncacheable (key: string): void {
    if (this.#o.hitForMissMs > 0) this.#markers.set(key, this.#o.clock.now() + this.#o.hitForMissMs)
  }

  clearMarker (key: string): void { this.#markers.delete(key) }

  isUncacheable (key: string): boolean {
    const until = this.#markers.get(key)
    if (until === undefined) return false
    if (this.#o.clock.now() < until) return true
    this.#markers.delete(key)
    return false
  }

  get inFlight (): number { return this.#flights.size }

  /** Bytes the hit-for-miss markers hold (within maxMarkerBytes). */
  get markerBytes (): number { return this.#markers.calculatedSize }
  get markerCount (): number { return this.#markers.size }
}
