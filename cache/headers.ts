/**
 * Header handling: what goes upstream, what is stored, and the precomputed
 * response heads the hit path writes without building anything per request.
 */
import type { IncomingHttpHeaders } from 'node:http'
import type { CachedObject, Encoding } from './store.js'
import { normalizeAcceptEncoding } from './compress.js'

/** RFC 9110 §7.6.1: connection-specific fields never travel past one hop. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'proxy-authenticate', 'proxy-authorization'])

/**
 * Request fields a client may not set for the origin: they describe the
 * client's connection and are not part of the cache key, so forwarding them
 * would let one client change what everyone else is served (cache poisoning,
 * design §2.5). We set X-Forwarded-For from the socket ourselves, and
 * X-Invalidated-After on fetches for the store (invalidated-after.ts).
 */
const UNTRUSTED_REQUEST = new Set(['x-forwarded-host', 'x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-port', 'x-forwarded-server', 'forwarded', 'x-real-ip', 'x-original-url', 'x-rewrite-url', 'x-http-method-override', 'x-host', 'x-invalidated-after'])

/** Fields that describe the stored representation but are recomputed on delivery. */
const NOT_DELIVERED = new Set(['age', 'content-length', 'surrogate-key', 'surrogate-control', 'x-cache', 'cache-status', 'set-cookie'])

function connectionTokens (value: string | string[] | undefined): Set<string> | null {
  if (value === undefined) return null
  const joined = Array.isArray(value) ? value.join(',') : value
  return new Set(joined.toLowerCase().split(',').map((s) => s.trim()).filter(Boolean))
}

export interface ForwardOptions {
  clientIp: string
  /**
   * The host the cache key was built from. RFC 9112 §3.2.2: with an
   * absolute-form target the target's authority replaces Host, so the
   * client's Host field may say something else; the origin must see the host
   * we keyed on, or one client could store a page rendered for another host
   * under this one (design §2.5). Empty (an HTTP/1.0 request without Host):
   * undici supplies the upstream's own authority, the same for every such request.
   */
  host: string
  /** Drop the client's validators: a cacheable miss must fetch a full body to store (RFC 9111 §4.3.1). */
  dropConditionals: boolean
  /**
   * Send the normalized Accept-Encoding (compress.ts) instead of the client's
   * field: the key holds only the normalized value (vary.ts), so the origin
   * must negotiate on exactly that, or two spellings that share one key could
   * be answered in different codings (RFC 9111 §4.1 normalization is only safe
   * if the origin sees the normalized form; Varnish does the same).
   */
  normalizeEncoding: boolean
}

/**
 * Request fields that only make sense between the client and us.
 * `expect`: RFC 9110 §10.1.1 makes 100-continue a per-hop affair; node's
 * server answers the client's expectation itself (it writes 100 Continue
 * before we read the body, and 417 for anything else), and we send upstream
 * a complete, already-buffered message, so there is nothing to expect there.
 * undici also refuses the field outright, which would turn every such request
 * into an upstream error. `host` is set from the key (see ForwardOptions.host).
 */
const NOT_FORWARDED = new Set(['expect', 'host', 'content-length'])

const CONDITIONALS = new Set(['if-none-match', 'if-modified-since', 'if-match', 'if-unmodified-since', 'if-range', 'range'])

/** Headers for the upstream request (undici takes a plain object). */
export function forwardRequestHeaders (headers: IncomingHttpHeaders, opts: ForwardOptions): Record<string, string> {
  const named = connectionTokens(headers.connection)
  const out: Record<string, string> = {}
  for (const name in headers) {
    // content-length: undici sets it from the buffered body.
    if (HOP_BY_HOP.has(name) || UNTRUSTED_REQUEST.has(name) || NOT_FORWARDED.has(name) || named?.has(name)) continue
    if (opts.dropConditionals && CONDITIONALS.has(name)) continue
    if (opts.normalizeEncoding && name === 'accept-encoding') continue
    const v = headers[name]
    if (v === undefined) continue
    out[name] = Array.isArray(v) ? v.join(name === 'cookie' ? '; ' : ', ') : v
  }
  if (opts.host !== '') out.host = opts.host
  // RFC 9110 §12.5.3: "identity" alone says no coding is acceptable, so an
  // origin that compresses by default still answers the key's identity
  // variant in identity (an absent field would allow any coding).
  if (opts.normalizeEncoding) out['accept-encoding'] = normalizeAcceptEncoding(headers['accept-encoding'])
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
