// The cache outcome of a response, from `X-Cache` (HIT|MISS|STALE|PASS)
// and/or `Cache-Status` (RFC 9211). Read on every response, so the hot path
// (`cacheFromRawHeaders`) scans autocannon's raw header list without
// building an object and remembers the few distinct values it sees.

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

// A cache answers with a handful of distinct values (HIT, MISS, a few
// Cache-Status forms); a value with a varying part (ttl=…) is parsed each time.
const MEMO_MAX = 256
const memo = new Map<string, CacheInfo>()

function isName (s: string, lower: string): boolean {
  if (s.length !== lower.length) return false
  return s === lower || s.toLowerCase() === lower
}

/**
 * From the raw header list of http-parser-js ([name, value, name, value, …]).
 * Repeated fields are joined with ", " as RFC 9110 §5.3 allows.
 */
export function cacheFromRawHeaders (raw: readonly string[]): CacheInfo {
  let x: string | undefined
  let cs: string | undefined
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const n = raw[i]
    if (n.length === 7 && isName(n, 'x-cache')) x = x === undefined ? raw[i + 1] : `${x}, ${raw[i + 1]}`
    else if (n.length === 12 && isName(n, 'cache-status')) cs = cs === undefined ? raw[i + 1] : `${cs}, ${raw[i + 1]}`
  }
  if (x === undefined && cs === undefined) return NO_CACHE_INFO
  const key = `${x ?? ''}\n${cs ?? ''}`
  let info = memo.get(key)
  if (info === undefined) {
    info = Object.freeze(parseCacheValues(x, cs))
    if (memo.size < MEMO_MAX) memo.set(key, info)
  }
  return info
}
