/**
 * Header handling: what goes upstream, what is stored, and the precomputed
 * response heads the hit path writes without building anything per request.
 */
import type { IncomingHttpHeaders } from 'node:http'
import type { CachedObject, Encoding } from './store.js'

/** RFC 9110 §7.6.1: connection-specific fields never travel past one hop. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'proxy-authenticate', 'proxy-authorization'])

/**
 * Request fields a client may not set for the origin: they describe the
 * client's connection and are not part of the cache key, so forwarding them
 * would let one client change what everyone else is served (cache poisoning,
 * design §2.5). We set X-Forwarded-For from the socket ourselves.
 */
const UNTRUSTED_REQUEST = new Set(['x-forwarded-host', 'x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-port', 'x-forwarded-server', 'forwarded', 'x-real-ip', 'x-original-url', 'x-rewrite-url', 'x-http-method-override', 'x-host'])

/** Fields that describe the stored representation but are recomputed on delivery. */
const NOT_DELIVERED = new Set(['age', 'content-length', 'surrogate-key', 'surrogate-control', 'x-cache', 'cache-status', 'set-cookie'])

function connectionTokens (value: string | string[] | undefined): Set<string> | null {
  if (value === undefined) return null
  const joined = Array.isArray(value) ? value.join(',') : value
  return new Set(joined.toLowerCase().split(',').map((s) => s.trim()).filter(Boolean))
}

export interface ForwardOptions {
  clientIp: string
  /** Drop the client's validators: a cacheable miss must fetch a full body to store (RFC 9111 §4.3.1). */
  dropConditionals: boolean
}

/** Headers for the upstream request (undici takes a plain object). */
export function forwardRequestHeaders (headers: IncomingHttpHeaders, opts: ForwardOptions): Record<string, string> {
  const named = connectionTokens(headers.connection)
  const out: Record<string, string> = {}
  for (const name in headers) {
    if (HOP_BY_HOP.has(name) || UNTRUSTED_REQUEST.has(name) || named?.has(name)) continue
    if (name === 'content-length') continue // undici sets it from the buffered body
    if (opts.dropConditionals && (name === 'if-none-match' || name === 'if-modified-since' || name === 'if-match' || name === 'if-unmodified-since' || name === 'if-range' || name === 'range')) continue
    const v = headers[name]
    if (v === undefined) continue
    out[name] = Array.isArray(v) ? v.join(name === 'cookie' ? '; ' : ', ') : v
  }
  out['x-forwarded-for'] = opts.clientIp
  out['x-forwarded-proto'] = 'http'
  out.via = headers.via ? `${String(headers.via)}, 1.1 flashcrowd` : '1.1 flashcrowd'
  return out
}

/** Upstream response fields as one string per name, hop-by-hop removed (RFC 9111 §3.1). */
export function responseHeaderRecord (headers: Record<string, string | string[] | undefined>): Record<string, string> {
  const named = connectionTokens(headers.connection)
  const out: Record<string, string> = {}
  for (const name in headers) {
    const lower = name.toLowerCase()
    if (HOP_BY_HOP.has(lower) || named?.has(lower)) continue
    const v = headers[name]
    if (v === undefined) continue
    out[lower] = Array.isArray(v) ? v.join(', ') : v
  }
  return out
}

/** Set-Cookie must stay separate lines (RFC 9110 §5.3), so pass responses keep the raw list. */
export function setCookieList (headers: Record<string, string | string[] | undefined>): string[] | undefined {
  const v = headers['set-cookie']
  if (v === undefined) return undefined
  return Array.isArray(v) ? v : [v]
}

export type CacheOutcome = 'HIT' | 'MISS' | 'STALE' | 'PASS'

/** RFC 9211 Cache-Status; our cache's name is `flashcrowd`. */
export function cacheStatus (parts: string): string { return 'flashcrowd; ' + parts }

/** Current age in whole seconds (RFC 9111 §4.2.3 current_age, §5.1 Age). */
export function currentAge (o: CachedObject, now: number): number {
  const age = o.initialAge + (now - o.responseTime) / 1000
  return age > 0 ? Math.floor(age) : 0
}

/**
 * The stored fields as a flat [name, value, …] array, ready for
 * `writeHead`, for one content coding. Age, X-Cache and Cache-Status sit at
 * fixed slots at the end so `refreshHeads` can update them in place.
 */
export function buildHead (o: CachedObject, encoding: Encoding): string[] {
  const head: string[] = []
  let vary = o.headers.vary
  for (const name in o.headers) {
    if (NOT_DELIVERED.has(name) || name === 'vary' || name === 'content-encoding') continue
    head.push(name, o.headers[name])
  }
  if (o.compressible && !(vary && /accept-encoding/i.test(vary))) vary = vary ? vary + ', Accept-Encoding' : 'Accept-Encoding'
  if (vary) head.push('vary', vary)
  const coding = encoding === 'identity' ? o.headers['content-encoding'] : encoding
  if (coding) head.push('content-encoding', coding)
  head.push('content-length', String(o.bodies[encoding]!.length))
  head.push('age', '0', 'x-cache', 'HIT', 'cache-status', '')
  return head
}

/** Updates the per-second values of every prepared head (once a second per object, not per hit). */
export function refreshHeads (o: CachedObject, now: number, second: number): void {
  const age = String(currentAge(o, now))
  const status = cacheStatus('hit; ttl=' + Math.round((o.freshUntil - now) / 1000))
  for (const enc in o.heads) {
    const head = o.heads[enc as Encoding]!
    const n = head.length
    head[n - 5] = age
    head[n - 1] = status
  }
  o.headsSecond = second
}

/** A head for non-hit deliveries (MISS, STALE, collapsed waits): a fresh copy with its own status values. */
export function headWith (o: CachedObject, encoding: Encoding, now: number, outcome: CacheOutcome, status: string): string[] {
  let head = o.heads[encoding]
  if (!head) head = o.heads[encoding] = buildHead(o, encoding)
  const copy = head.slice()
  const n = copy.length
  copy[n - 5] = String(currentAge(o, now))
  copy[n - 3] = outcome
  copy[n - 1] = status
  return copy
}

/** RFC 9110 §15.4.5: the fields a 304 carries. */
export function notModifiedHead (o: CachedObject, now: number, outcome: CacheOutcome, status: string): string[] {
  const head: string[] = []
  for (const name of ['cache-control', 'content-location', 'date', 'etag', 'expires', 'vary', 'last-modified']) {
    const v = o.headers[name]
    if (v !== undefined) head.push(name, v)
  }
  head.push('age', String(currentAge(o, now)), 'x-cache', outcome, 'cache-status', status)
  return head
}
