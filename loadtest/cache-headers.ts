// The cache outcome of a response, from `X-Cache` (HIT|MISS|STALE|PASS)
// and/or `Cache-Status` (RFC 9211). Read on every response, so the hot path
// (`CacheHeadScan`) reads the values' bytes where they lie in the response
// head, without building a string, and answers with one of ten frozen
// objects: every response is counted, none sampled.

export type CacheState = 'HIT' | 'STALE' | 'MISS' | 'PASS'
export interface CacheInfo {
  /** null when the response carried neither X-Cache nor Cache-Status (not behind the cache) */
  state: CacheState | null
  /** RFC 9211 `collapsed`: the request waited on another request's fetch */
  collapsed: boolean
}

export const NO_CACHE_INFO: CacheInfo = Object.freeze({ state: null, collapsed: false })

type HeaderBag = Record<string, string | string[] | undefined>

function header (headers: HeaderBag, name: string): string | undefined {
  for (const [k, v] of Object.entries(headers)) {
    if (k.toLowerCase() === name) return Array.isArray(v) ? v.join(', ') : v
  }
  return undefined
}

/**
 * X-Cache wins when present because it tells a stale (grace) delivery apart
 * from a hit; Cache-Status adds `collapsed`. In a Cache-Status list (RFC 9211
 * §2: the cache nearest the origin first), any member with `hit` means the
 * response came from a cache.
 */
export function parseCacheValues (xCacheRaw: string | undefined, cacheStatus: string | undefined): CacheInfo {
  const xCache = xCacheRaw?.trim().toUpperCase()
  let state: CacheState | null = null
  let collapsed = false
  if (cacheStatus) {
    let hit = false
    let fwd: string | undefined
    for (const member of cacheStatus.split(',')) {
      const params = member.split(';').slice(1).map(p => p.trim().toLowerCase())
      for (const p of params) {
        if (p === 'hit') hit = true
        else if (p === 'collapsed') collapsed = true
        else if (p.startsWith('fwd=')) fwd = p.slice(4).replace(/^"|"$/g, '')
      }
    }
    if (hit) state = 'HIT'
    else if (fwd === 'bypass' || fwd === 'method' || fwd === 'request') state = 'PASS'
    else if (fwd !== undefined) state = 'MISS'
  }
  if (xCache) {
    const first = xCache.split(/[\s,]+/)[0]
    if (first === 'HIT' || first === 'STALE' || first === 'MISS' || first === 'PASS') state = first
  }
  return { state, collapsed }
}

/** From a header object (fetch, node:http), any name case. */
export function parseCacheHeaders (headers: HeaderBag): CacheInfo {
  return parseCacheValues(header(headers, 'x-cache'), header(headers, 'cache-status'))
}

// One frozen answer per (state, collapsed): the byte scanner allocates nothing per response.
const STATES: ReadonlyArray<CacheState | null> = [null, 'HIT', 'STALE', 'MISS', 'PASS']
const ANSWERS: readonly CacheInfo[] = STATES.flatMap(state => [false, true].map(collapsed => Object.freeze({ state, collapsed })))
const answer = (state: number, collapsed: boolean): CacheInfo => ANSWERS[state * 2 + (collapsed ? 1 : 0)]
const S_NONE = 0
const S_HIT = 1
const S_STALE = 2
const S_MISS = 3
const S_PASS = 4

const SP = 0x20
const HTAB = 0x09
const COMMA = 0x2c
const SEMI = 0x3b
const QUOTE = 0x22

/** b[s, s + lower.length) equals `lower` ignoring ASCII case. */
export function bytesAre (b: Uint8Array, s: number, e: number, lower: string): boolean {
  if (e - s !== lower.length) return false
  for (let i = 0; i < lower.length; i++) {
    let c = b[s + i]
    if (c >= 0x41 && c <= 0x5a) c |= 0x20
    if (c !== lower.charCodeAt(i)) return false
  }
  return true
}

/**
 * The same reading as parseCacheValues, from the bytes of the header values
 * in a response head (loadtest/http-response.ts calls it once per field
 * line). One scanner per connection, reset before each response.
 */
export class CacheHeadScan {
  /** state named by the first X-Cache line (S_*), -1 when there was none */
  #x = -1
  #hit = false
  #collapsed = false
  /** -1 no fwd param; 0 a miss; 1 a pass (bypass, method, request) */
  #fwd = -1
  #seen = false

  reset (): void {
    this.#x = -1
    this.#hit = false
    this.#collapsed = false
    this.#fwd = -1
    this.#seen = false
  }

  /**
   * An X-Cache line's value, b[s, e). Repeated lines are one list (RFC 9110
   * §5.3) whose first token decides: only the first line counts.
   */
  xCache (b: Uint8Array, s: number, e: number): void {
    this.#seen = true
    if (this.#x !== -1) return
    while (s < e && (b[s] === SP || b[s] === HTAB)) s++
    let t = s
    while (t < e && b[t] !== SP && b[t] !== HTAB && b[t] !== COMMA) t++
    this.#x = bytesAre(b, s, t, 'hit') ? S_HIT : bytesAre(b, s, t, 'stale') ? S_STALE : bytesAre(b, s, t, 'miss') ? S_MISS : bytesAre(b, s, t, 'pass') ? S_PASS : S_NONE
  }

  /** A Cache-Status line's value, b[s, e): members split on ',', each a cache name then ';'-separated params. */
  cacheStatus (b: Uint8Array, s: number, e: number): void {
    this.#seen = true
    let inName = true
    let p = s
    for (let i = s; i <= e; i++) {
      const c = i < e ? b[i] : COMMA
      if (c !== COMMA && c !== SEMI) continue
      if (!inName) this.#param(b, p, i)
      inName = c === COMMA
      p = i + 1
    }
  }

  #param (b: Uint8Array, s: number, e: number): void {
    while (s < e && (b[s] === SP || b[s] === HTAB)) s++
    while (e > s && (b[e - 1] === SP || b[e - 1] === HTAB)) e--
    if (bytesAre(b, s, e, 'hit')) this.#hit = true
    else if (bytesAre(b, s, e, 'collapsed')) this.#collapsed = true
    else if (e - s >= 4 && bytesAre(b, s, s + 4, 'fwd=')) {
      let v = s + 4
      let w = e
      if (v < w && b[v] === QUOTE) v++
      if (w > v && b[w - 1] === QUOTE) w--
      this.#fwd = bytesAre(b, v, w, 'bypass') || bytesAre(b, v, w, 'method') || bytesAre(b, v, w, 'request') ? 1 : 0
    }
  }

  /** What the lines seen since reset() say. */
  result (): CacheInfo {
    if (!this.#seen) return NO_CACHE_INFO
    let state = this.#hit ? S_HIT : this.#fwd === 1 ? S_PASS : this.#fwd === 0 ? S_MISS : S_NONE
    if (this.#x > S_NONE) state = this.#x
    return answer(state, this.#collapsed)
  }
}
