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

/**
 * Checks a ban expression an admin sent, before it is applied or published.
 * A ban is tested against every stored URL, and again by every in-flight fetch
 * that finishes while it is logged; a pattern with exponential backtracking
 * would stall the event loop for everyone. (Events from the bus are only
 * compiled: a node never ignores a ban another accepted.)
 */
export function validateBan (pattern: string): RegExp {
  const re = compileBan(pattern)
  if (hasNestedQuantifier(pattern)) throw new Error('Ban-Url has a quantified group that contains a quantifier (like (a+)+): it can take exponential time; rewrite it without the nesting')
  return re
}

/**
 * The classic catastrophic-backtracking shape: a group holding a repeating
 * quantifier that is itself repeated, e.g. `(a+)+`, `(\w*x)*`,
 * `(?:a{2,}b)+`, `((a+))*`. One linear pass with a stack of open groups;
 * escapes and character classes are skipped. It does not catch every slow
 * pattern (overlapping alternations such as `(a|a)*`), only the common one,
 * cheaply.
 */
export function hasNestedQuantifier (pattern: string): boolean {
  /** Per open group: whether a repeating quantifier occurs inside it. */
  const repeatsInside: boolean[] = []
  /** The previous atom was a group with a repeat inside. */
  let afterRepeatingGroup = false
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]
    if (c === '\\') { i++; afterRepeatingGroup = false; continue }
    if (c === '[') {
      // Skip the class: ']' right after '[' or '[^' is literal; escapes inside are skipped.
      i++
      if (pattern[i] === '^') i++
      if (pattern[i] === ']') i++
      while (i < pattern.length && pattern[i] !== ']') { if (pattern[i] === '\\') i++; i++ }
      afterRepeatingGroup = false
      continue
    }
    if (c === '(') {
      repeatsInside.push(false)
      // (?:  (?=  (?!  (?<=  (?<!  (?<name>: the '?' is group syntax, not a quantifier.
      if (pattern[i + 1] === '?') {
        i += 2
        if (pattern[i] === '<' && pattern[i + 1] !== '=' && pattern[i + 1] !== '!') { while (i < pattern.length && pattern[i] !== '>') i++ } else if (pattern[i] === '<') i++
      }
      afterRepeatingGroup = false
      continue
    }
    if (c === ')') {
      const inner = repeatsInside.pop() ?? false
      // A repeat inside a nested group is inside the enclosing one too.
      if (inner && repeatsInside.length > 0) repeatsInside[repeatsInside.length - 1] = true
      afterRepeatingGroup = inner
      continue
    }
    const repeats = c === '*' || c === '+' || (c === '{' && /^\{\d+(,\d*)?\}/.test(pattern.slice(i, i + 24)))
    if (repeats) {
      if (afterRepeatingGroup) return true
      if (repeatsInside.length > 0) repeatsInside[repeatsInside.length - 1] = true
    }
    afterRepeatingGroup = false
  }
  return false
}

export type Matcher = (o: Pick<CachedObject, 'url' | 'host' | 'tags' | 'fetchStarted'>) => boolean

export interface LoggedInvalidation { at: number, matches: Matcher }

export class InvalidationLog {
  readonly #entries: LoggedInvalidation[] = []
  readonly #keepMs: number
  readonly #max: number
  /** Time of the newest entry dropped for space or age (-Infinity: none yet). */
  #droppedAt = -Infinity

  constructor (options: { keepMs?: number, max?: number } = {}) {
    this.#keepMs = options.keepMs ?? 120_000
    this.#max = options.max ?? 10_000
  }

  record (at: number, matches: Matcher): void {
    this.#entries.push({ at, matches })
    if (this.#entries.length > this.#max) {
      const drop = this.#entries.length - this.#max
      // Entries are in time order: the last one dropped is the newest forgotten.
      this.#droppedAt = Math.max(this.#droppedAt, this.#entries[drop - 1].at)
      this.#entries.splice(0, drop)
    }
  }

  /**
   * Whether an invalidation at or after `since` applies to `o`. Anything older
   * than the log reaches back counts as invalidated, to be safe: by age
   * (keepMs), or because entries at or after `since` were dropped to keep the
   * log bounded (we no longer know what they matched).
   */
  invalidatedSince (since: number, o: Pick<CachedObject, 'url' | 'host' | 'tags' | 'fetchStarted'>, now: number): boolean {
    if (now - since > this.#keepMs || since <= this.#droppedAt) return true
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
    if (drop) {
      this.#droppedAt = Math.max(this.#droppedAt, this.#entries[drop - 1].at)
      this.#entries.splice(0, drop)
    }
  }

  get size (): number { return this.#entries.length }
}
