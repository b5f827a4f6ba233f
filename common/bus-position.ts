/**
 * Where a subscriber stands on the invalidation bus: the id of the newest
 * event it has applied (or that existed when it subscribed). Every transport
 * numbers events in one total order that all subscribers share — Redis Stream
 * ids (`<ms>-<seq>`) in the cluster, the root relay's counter on one machine —
 * so two processes can compare positions: a cache node that applied event X
 * tells the frontend it fetches from "answer with nothing older than X", and
 * the frontend checks (or waits) that it has applied X too (design §2.3,
 * issue 11 finding 3).
 */

/** `<ms>-<seq>` (Redis) or `<n>` (the embedded relay); anything else is not a position. */
const ID = /^(\d{1,20})(?:-(\d{1,20}))?$/

export function parseBusId (id: unknown): readonly [bigint, bigint] | undefined {
  if (typeof id !== 'string') return undefined
  const m = ID.exec(id)
  if (!m) return undefined
  return [BigInt(m[1]), BigInt(m[2] ?? '0')]
}

/** Orders two parsed ids: negative when `a` is older. */
function compareParsed (a: readonly [bigint, bigint], b: readonly [bigint, bigint]): number {
  if (a[0] !== b[0]) return a[0] < b[0] ? -1 : 1
  if (a[1] !== b[1]) return a[1] < b[1] ? -1 : 1
  return 0
}

/** Orders two bus ids (negative: `a` is older); undefined when either is not an id. */
export function compareBusIds (a: string, b: string): number | undefined {
  const pa = parseBusId(a)
  const pb = parseBusId(b)
  if (!pa || !pb) return undefined
  return compareParsed(pa, pb)
}

/** `id` is at or before `position` (false when either is unknown or malformed). */
export function atOrBefore (id: string, position: string | undefined): boolean {
  if (position === undefined) return false
  const c = compareBusIds(id, position)
  return c !== undefined && c <= 0
}

interface Waiter { target: readonly [bigint, bigint], resolve: (reached: boolean) => void, timer: NodeJS.Timeout }

/**
 * A monotonic position with bounded waits. `advance` is called after an event
 * was applied (never before: a waiter released by it may rely on the event's
 * effects); ids that are not positions (a transport's synthetic gap notice)
 * are ignored.
 */
export class BusPosition {
  #current: readonly [bigint, bigint] | undefined
  #text: string | undefined
  readonly #waiters = new Set<Waiter>()

  /** The newest position, or undefined before the subscription said where it starts. */
  get current (): string | undefined { return this.#text }

  advance (id: string | undefined): void {
    const parsed = parseBusId(id)
    if (!parsed) return
    if (this.#current && compareParsed(parsed, this.#current) <= 0) return
    this.#current = parsed
    this.#text = id
    for (const w of this.#waiters) {
      if (compareParsed(w.target, parsed) <= 0) this.#release(w, true)
    }
  }

  /** Whether every event up to `id` has been applied here. A malformed id is reached (there is nothing to wait for). */
  reached (id: string): boolean {
    const target = parseBusId(id)
    if (!target) return true
    return this.#current !== undefined && compareParsed(target, this.#current) <= 0
  }

  /** Resolves true once `id` is reached, false after `timeoutMs` (or on close). */
  waitFor (id: string, timeoutMs: number): Promise<boolean> {
    const target = parseBusId(id)
    if (!target || this.reached(id)) return Promise.resolve(true)
    if (timeoutMs <= 0) return Promise.resolve(false)
    return new Promise((resolve) => {
      const w: Waiter = { target, resolve, timer: setTimeout(() => this.#release(w, false), timeoutMs) }
      this.#waiters.add(w)
    })
  }

  /** Releases every waiter (false): for shutdown. */
  close (): void {
    for (const w of this.#waiters) this.#release(w, false)
  }

  #release (w: Waiter, reached: boolean): void {
    if (!this.#waiters.delete(w)) return
    clearTimeout(w.timer)
    w.resolve(reached)
  }
}
