/**
 * Bans and the recent-invalidation log.
 *
 * A ban removes every stored object whose URL (path and query) matches a
 * regular expression. Bans are applied eagerly to what is stored (a sweep over
 * the store is milliseconds at our sizes, and frees the memory at once); the
 * log remembers each invalidation for a while so that a fetch which started
 * *before* an invalidation and finishes after it does not store the page it
 * fetched: that page may predate the write (design §2.3/§2.4: a purge is never
 * undone by re-caching a page rendered before it).
 */
import type { CachedObject } from './store.js'

export const MAX_BAN_PATTERN = 1024

/** Compiles a ban expression; throws a precise message for the admin who sent it. */
export function compileBan (pattern: string): RegExp {
  if (pattern.length > MAX_BAN_PATTERN) throw new Error(`Ban-Url is longer than ${MAX_BAN_PATTERN} characters`)
  try {
    return new RegExp(pattern)
  } catch (err) {
    throw new Error(`Ban-Url is not a valid regular expression: ${(err as Error).message}`)
  }
}

export type Matcher = (o: Pick<CachedObject, 'url' | 'host' | 'tags' | 'storedAt'>) => boolean

export interface LoggedInvalidation { at: number, matches: Matcher }

export class InvalidationLog {
  readonly #entries: LoggedInvalidation[] = []
  readonly #keepMs: number
  readonly #max: number

  constructor (options: { keepMs?: number, max?: number } = {}) {
    this.#keepMs = options.keepMs ?? 120_000
    this.#max = options.max ?? 10_000
  }

  record (at: number, matches: Matcher): void {
    this.#entries.push({ at, matches })
    if (this.#entries.length > this.#max) this.#entries.splice(0, this.#entries.length - this.#max)
  }

  /**
   * Whether an invalidation at or after `since` applies to `o`. Anything older
   * than the log reaches back counts as invalidated, to be safe.
   */
  invalidatedSince (since: number, o: Pick<CachedObject, 'url' | 'host' | 'tags' | 'storedAt'>, now: number): boolean {
    if (now - since > this.#keepMs) return true
    for (let i = this.#entries.length - 1; i >= 0; i--) {
      const e = this.#entries[i]
      if (e.at < since) break
      if (e.matches(o)) return true
    }
    return false
  }

  prune (now: number): void {
    let drop = 0
    while (drop < this.#entries.length && now - this.#entries[drop].at > this.#keepMs) drop++
    if (drop) this.#entries.splice(0, drop)
  }

  get size (): number { return this.#entries.length }
}
