/**
 * Storability and freshness (RFC 9111 §3, §4.2) through http-cache-semantics
 * in shared-cache mode; only what it leaves open is written here: the
 * targeted field (RFC 9213), the stale windows (RFC 5861), our grace, and the
 * few checks stricter than the library (Set-Cookie, Vary: *).
 *
 * Everything is reduced to numbers at store time so the hit path compares
 * integers instead of re-parsing headers on every request.
 */
import CachePolicy from 'http-cache-semantics'
import { varyHasStar } from './vary.js'
import { canonicalCacheControl, deltaSeconds, EXPIRED, parseCacheControl, parseHttpDate, targetedCacheControl } from './response-fields.js'

export interface Clock { now (): number }
export const systemClock: Clock = { now: () => Date.now() }

type Headers = Record<string, string>
export interface PolicyRequest { method: string, url: string, headers: Headers }
export interface PolicyResponse { status: number, headers: Headers }

export type PolicyClass = new (req: PolicyRequest, res: PolicyResponse, options?: CachePolicy.Options) => CachePolicy

/** A CachePolicy whose notion of "now" is the injected clock, so TTL tests run on fake time. */
export function policyClassFor (clock: Clock): PolicyClass {
  return class ClockedPolicy extends CachePolicy {
    now (): number { return clock.now() }
  } as unknown as PolicyClass
}

export interface FreshnessOptions {
  graceSeconds: number
  /** Used only when the response is storable but gives no lifetime at all. */
  defaultTtlSeconds: number
  /** Targeted fields this cache obeys, in order (`targetedFields`); default: the tier's. */
  targets?: readonly string[]
}

export interface Freshness {
  storable: boolean
  /** Why it is not storable (Cache-Status detail). */
  reason?: string
  policy: CachePolicy
  initialAge: number
  freshUntil: number
  swrMs: number
  sieMs: number
  graceMs: number
  mustRevalidate: boolean
  explicitlyShared: boolean
}

export { parseCacheControl }

function seconds (v: string | true | undefined): number {
  return deltaSeconds(v) ?? 0
}

/** RFC 9213 §2: the field aimed at this project's caches (the tier's own). */
export const OWN_TARGETED_FIELD = 'flashcrowd-cache-control'
/** RFC 9213 §3: the field aimed at CDN caches. */
export const CDN_TARGETED_FIELD = 'cdn-cache-control'

/**
 * RFC 9213 §2.1: each cache has a target list, most specific first, and uses
 * the first field of the list with a valid value. A node of the tier obeys
 * Flashcrowd-Cache-Control and passes CDN-Cache-Control on untouched (it is
 * not a CDN: RFC 9213 §3 aims that field at the edge in front of us, and a
 * cache ignores targeted fields not on its list, §2.1). A node that is the
 * edge (CACHE_EDGE) obeys CDN-Cache-Control. Both fall back on
 * Surrogate-Control (Edge Architecture 1.0), then Cache-Control.
 */
export function targetedFields (edge: boolean): readonly string[] {
  return edge ? [CDN_TARGETED_FIELD, 'surrogate-control'] : [OWN_TARGETED_FIELD, 'surrogate-control']
}
const TIER_TARGETS = targetedFields(false)

/** The first field of the target list with a valid value, as Cache-Control directives (RFC 9213 §2.1). */
function targetedValue (headers: Headers, targets: readonly string[]): string | undefined {
  for (const name of targets) {
    const value = headers[name]
    if (value === undefined) continue
    // RFC 9213 §2.1: an invalid targeted field is ignored, as if absent.
    const parsed = name === 'surrogate-control' ? surrogateControl(value) : targetedCacheControl(value)
    if (parsed !== undefined) return parsed
  }
  return undefined
}

/**
 * RFC 9213 §2.1: a cache that recognises a targeted field uses it *instead
 * of* Cache-Control and Expires. The library only knows Cache-Control, so we
 * hand it a copy where the targeted field sits in that place.
 */
export function effectiveHeaders (headers: Headers, now: number = Date.now(), targets: readonly string[] = TIER_TARGETS): Headers {
  const copy: Headers = { ...headers }
  const targeted = targetedValue(headers, targets)
  if (targeted !== undefined) {
    copy['cache-control'] = canonicalCacheControl(targeted)
    delete copy.expires
    delete copy.pragma
  } else if (headers['cache-control'] !== undefined) {
    // RFC 9111 §5.2: directive names are case-insensitive (`No-StOrE`); the library compares them as written.
    copy['cache-control'] = canonicalCacheControl(headers['cache-control'])
  }
  // RFC 9111 §5.3: an Expires that is not a valid HTTP-date means "already
  // expired"; the library reads it with Date.parse, which accepts `UTC`,
  // missing commas, one-digit hours and more, so only a strictly valid value
  // reaches it, rewritten in the one format Date.parse reads exactly.
  if (copy.expires !== undefined) {
    const t = parseHttpDate(copy.expires, now)
    copy.expires = Number.isNaN(t) ? EXPIRED : new Date(t).toUTCString()
  }
  // RFC 9111 §5.1: a list-based Age (one line `7200, 0`, or several lines
  // joined) counts by its first member; a first member that is not
  // delta-seconds (`7200.0`, `abc`) makes the field ignored.
  if (copy.age !== undefined) {
    const comma = copy.age.indexOf(',')
    const first = (comma === -1 ? copy.age : copy.age.slice(0, comma)).trim()
    if (deltaSeconds(first) === undefined) delete copy.age
    else copy.age = first
  }
  return copy
}

/** Edge Architecture 1.0 Surrogate-Control: `max-age=N[+M]`, `no-store`, optionally `;target`. */
function surrogateControl (value: string | undefined): string | undefined {
  if (!value) return undefined
  return value.split(',').map((d) => {
    const directive = d.split(';')[0].trim()
    const m = /^max-age=(\d+)(?:\+(\d+))?$/i.exec(directive)
    if (m) return m[2] ? `max-age=${m[1]}, stale-while-revalidate=${m[2]}` : `max-age=${m[1]}`
    return directive
  }).filter(Boolean).join(', ')
}

/**
 * Decides whether a fetched response may be stored and computes its windows.
 * `credentialed` is true when the request carried Authorization or Cookie.
 */
export function evaluateResponse (
  Policy: PolicyClass, req: PolicyRequest, res: PolicyResponse,
  requestTime: number, responseTime: number, opts: FreshnessOptions, credentialed: boolean
): Freshness {
  const headers = effectiveHeaders(res.headers, responseTime, opts.targets)
  // The library evaluates GET semantics; a HEAD miss is fetched as GET anyway.
  const policy = new Policy({ method: 'GET', url: req.url, headers: req.headers }, { status: res.status, headers }, { shared: true, cacheHeuristic: 0.1 })
  const cc = parseCacheControl(headers['cache-control'])
  const base = { policy, initialAge: 0, freshUntil: 0, swrMs: 0, sieMs: 0, graceMs: 0, mustRevalidate: true, explicitlyShared: false }

  // Never store a response that sets a cookie: it is someone's session (design §2.5).
  if (res.headers['set-cookie'] !== undefined) return { ...base, storable: false, reason: 'set-cookie' }
  // RFC 9111 §4.1: Vary: * never matches, storing it would only waste space.
  if (varyHasStar(res.headers.vary)) return { ...base, storable: false, reason: 'vary-star' }
  // RFC 9111 §3 (no-store, private in a shared cache, Authorization without
  // public/s-maxage/must-revalidate §3.5, understood status codes).
  if (!policy.storable()) return { ...base, storable: false, reason: 'not-storable' }

  // RFC 9111 §3.5 names what lets a shared cache reuse an authenticated
  // response; we hold Cookie to the same bar because pages differing by
  // cookie are personal unless the origin says otherwise.
  const explicitlyShared = cc.has('public') || cc.has('s-maxage') || cc.has('must-revalidate')
  if (credentialed && !explicitlyShared) return { ...base, storable: false, reason: 'credentials' }

  // RFC 9111 §4.2.3: corrected_age_value = age_value + response_delay. The
  // apparent age from Date is left out on purpose (as Varnish does): it
  // compares two hosts' clocks, and skew would make fresh pages look stale.
  const ageValue = seconds(headers.age)
  const initialAge = ageValue + Math.max(0, responseTime - requestTime) / 1000

  // RFC 9111 §4.2.1 (s-maxage > max-age > Expires) and §4.2.2 (heuristics only
  // for heuristically cacheable statuses without explicit expiry): the library.
  let lifetime = policy.maxAge()
  const noCache = cc.has('no-cache') || /no-cache/.test(headers.pragma ?? '')
  const hasExplicit = cc.has('s-maxage') || cc.has('max-age') || headers.expires !== undefined
  if (!noCache && lifetime === 0 && !hasExplicit && !res.headers['last-modified'] && opts.defaultTtlSeconds > 0) lifetime = opts.defaultTtlSeconds

  // RFC 9111 §5.2.2.2/§5.2.2.4/§5.2.2.8: must-revalidate, no-cache and
  // proxy-revalidate forbid serving the response stale at all.
  const forbidsStale = noCache || cc.has('must-revalidate') || cc.has('proxy-revalidate')
  // RFC 9111 §5.2.2.10: in a shared cache s-maxage incorporates
  // proxy-revalidate: no stale copy without revalidation — not for a
  // client's max-stale, not when disconnected, not as our grace.
  const mustRevalidate = forbidsStale || cc.has('s-maxage')
  // RFC 5861 §3/§4: explicit stale windows are the origin's own permission,
  // honoured even with s-maxage.
  const swrMs = forbidsStale ? 0 : seconds(cc.get('stale-while-revalidate')) * 1000
  const sieMs = forbidsStale ? 0 : seconds(cc.get('stale-if-error')) * 1000
  // RFC 9111 §4.2.4: our own grace (stale without the origin's word) only when no directive forbids it.
  const graceMs = mustRevalidate ? 0 : opts.graceSeconds * 1000

  return {
    policy,
    storable: true,
    initialAge,
    freshUntil: noCache ? responseTime : responseTime + Math.max(0, lifetime - initialAge) * 1000,
    swrMs,
    sieMs,
    graceMs,
    mustRevalidate,
    explicitlyShared
  }
}

/** The times of a stored response that decide its reuse (store.ts CachedObject carries them). */
export interface StoredTimes {
  responseTime: number
  initialAge: number
  freshUntil: number
  swrMs: number
  graceMs: number
  mustRevalidate: boolean
  /** When its fetch started, in fetch.ts `nextSequence` order. */
  fetchSequence: number
}

/**
 * How a stored response may answer a request: fresh, stale within one of
 * its windows (served while one background fetch refreshes it), or only
 * after revalidation. The one freshness decision: the state machine's
 * lookup and the hit front (state-machine.ts `plainHit`) both ask it.
 * `arrived`: the request's arrival in `nextSequence` order.
 */
export type Reuse = 'fresh' | 'stale-while-revalidate' | 'grace' | 'max-stale' | 'revalidate'

export function reuse (o: StoredTimes, now: number, cacheControl: string | undefined, pragma: string | undefined, arrived: number): Reuse {
  const directives = cacheControl !== undefined || pragma !== undefined
  // RFC 9111 §5.2.1: request directives may demand a fresher or validated
  // response (a browser reload sends max-age=0 or no-cache). Such requests
  // still coalesce (policy.ts, reload storms): a waiter woken by another
  // request's fetch takes its object only when that fetch started after the
  // waiter arrived — a response validated after the request was made.
  if (directives && o.fetchSequence < arrived &&
    requestForbidsStored(cacheControl, pragma, (now - o.responseTime) / 1000 + o.initialAge, (o.freshUntil - now) / 1000)) return 'revalidate'
  // RFC 9111 §4.2: fresh → reuse without contacting the origin.
  if (now < o.freshUntil) return 'fresh'
  // RFC 5861 §3 stale-while-revalidate (none under must-revalidate or no-cache).
  if (now < o.freshUntil + o.swrMs) return 'stale-while-revalidate'
  // The opt-in grace (RFC 9111 §4.2.4: only where configured; none under s-maxage).
  if (now < o.freshUntil + o.graceMs) return 'grace'
  // RFC 9111 §5.2.1.2: the client accepts a response this stale, unless the response requires revalidation.
  if (directives && !o.mustRevalidate && requestAcceptsStale(cacheControl, (now - o.freshUntil) / 1000)) return 'max-stale'
  // Stale beyond its windows: revalidate (RFC 9111 §4.3).
  return 'revalidate'
}

/**
 * RFC 9111 §5.2.1: request directives that make a stored response unusable
 * without going to the origin (no-cache, max-age, min-fresh) — rare, so only
 * looked at when the request carries Cache-Control or Pragma at all.
 */
export function requestForbidsStored (cacheControl: string | undefined, pragma: string | undefined, ageSeconds: number, freshLeftSeconds: number): boolean {
  if (cacheControl === undefined) return pragma !== undefined && /no-cache/i.test(pragma) // §5.4
  const cc = parseCacheControl(cacheControl)
  if (cc.has('no-cache')) return true
  const maxAge = cc.get('max-age')
  if (maxAge !== undefined && ageSeconds > seconds(maxAge)) return true
  const minFresh = cc.get('min-fresh')
  if (minFresh !== undefined && freshLeftSeconds < seconds(minFresh)) return true
  return false
}

/** RFC 9111 §5.2.1.2: max-stale (with no value: any staleness) lets the client take a stale response. */
export function requestAcceptsStale (cacheControl: string | undefined, staleSeconds: number): boolean {
  if (cacheControl === undefined) return false
  const v = parseCacheControl(cacheControl).get('max-stale')
  if (v === undefined) return false
  if (v === true) return true
  const limit = deltaSeconds(v)
  return limit !== undefined && staleSeconds <= limit
}

/** RFC 9111 §5.2.1.5: the client does not want this response stored. */
export function requestNoStore (cacheControl: string | undefined): boolean {
  return cacheControl !== undefined && parseCacheControl(cacheControl).has('no-store')
}
