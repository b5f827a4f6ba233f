/**
 * Header handling: what goes upstream, what is stored, and the precomputed
 * response heads the hit path writes without building anything per request.
 */
import type { IncomingHttpHeaders } from 'node:http'
import type { CachedObject, Encoding } from './store.js'
import { etagForCoding, normalizeAcceptEncoding } from './compress.js'

/** RFC 9110 §7.6.1: connection-specific fields never travel past one hop. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'proxy-authenticate', 'proxy-authorization'])

/**
 * Forwarding fields: what a proxy on the way says about the request — the
 * client's address, the scheme, host, port or path prefix it was received
 * on, the original URL or method. A client can write any of them, none is
 * part of the cache key, and origins build links, redirects and access
 * decisions from them, so forwarding one would let a single request change
 * what everyone is served (cache poisoning, design §2.5). They are matched
 * by name (these and the prefixes below) and only FORWARDING_ALLOWLIST
 * reaches the origin, with values the cache writes itself (X-Forwarded-For
 * believes only trusted hops: forwarded.ts). X-Invalidated-After is the
 * cache's own word to the frontends (invalidated-after.ts): a client's is dropped.
 */
const FORWARDING = new Set(['forwarded', 'x-forwarded', 'x-real-ip', 'x-client-ip', 'client-ip', 'true-client-ip', 'cf-connecting-ip', 'fastly-client-ip', 'x-cluster-client-ip', 'x-proxyuser-ip', 'x-host', 'x-scheme', 'x-url-scheme', 'front-end-https', 'x-rewrite-url', 'x-http-method-override', 'x-http-method', 'x-method-override', 'x-invalidated-after'])
const FORWARDING_PREFIXES = ['x-forwarded-', 'x-original-', 'x-orig-', 'x-real-']

/**
 * The forwarding fields the origin receives, all written by the cache
 * (`forwardingFields`): X-Forwarded-For (the client address chain),
 * X-Forwarded-Proto, and Via with our hop appended (RFC 9110 §7.6.3).
 * Everything else of the kind (X-Forwarded-Host, -Port, -Prefix, -Scheme,
 * -Ssl, X-Original-Host, X-Original-URL, X-Real-IP, Forwarded, …) is dropped.
 */
export const FORWARDING_ALLOWLIST: readonly string[] = ['x-forwarded-for', 'x-forwarded-proto', 'via']

/** Whether a (lower-case) field name is a forwarding field (see FORWARDING). */
export function isForwardingField (name: string): boolean {
  if (FORWARDING.has(name) || name === 'via') return true
  for (const p of FORWARDING_PREFIXES) if (name.startsWith(p)) return true
  return false
}

/** Fields that describe the stored representation but are recomputed on delivery. */
const NOT_DELIVERED = new Set(['age', 'content-length', 'surrogate-key', 'surrogate-control', 'x-cache', 'cache-status', 'set-cookie'])

function connectionTokens (value: string | string[] | undefined): Set<string> | null {
  if (value === undefined) return null
  const joined = Array.isArray(value) ? value.join(',') : value
  return new Set(joined.toLowerCase().split(',').map((s) => s.trim()).filter(Boolean))
}

/**
 * Whether `name` (lower-case) is one of the options of a Connection field
 * (RFC 9110 §7.6.1). No allocation unless a token has the name's length:
 * this runs on the hit path for every Vary name.
 */
function namedInConnection (connection: string | string[], name: string): boolean {
  const v = typeof connection === 'string' ? connection : connection.join(',')
  if (v.length < name.length) return false
  let start = 0
  while (start < v.length) {
    let end = v.indexOf(',', start)
    if (end === -1) end = v.length
    let a = start
    let b = end
    while (a < b && (v.charCodeAt(a) === 32 || v.charCodeAt(a) === 9)) a++
    while (b > a && (v.charCodeAt(b - 1) === 32 || v.charCodeAt(b - 1) === 9)) b--
    if (b - a === name.length && v.slice(a, b).toLowerCase() === name) return true
    start = end + 1
  }
  return false
}

export interface ForwardOptions {
  /** The X-Forwarded-For to send: `client, hop…, peer` (forwarded.ts). */
  forwardedFor: string
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

/**
 * Whether the client's field `name` (lower-case) reaches the origin as the
 * client wrote it: not hop-by-hop, not named in the client's Connection
 * field, not a forwarding field, not one the cache sets itself.
 */
function passesThrough (name: string, connection: string | string[] | undefined): boolean {
  if (HOP_BY_HOP.has(name) || NOT_FORWARDED.has(name) || isForwardingField(name)) return false
  return connection === undefined || !namedInConnection(connection, name)
}

/**
 * The value of the client's field `name` that the origin receives
 * (undefined: the origin does not see it). The cache key's Vary part is
 * built from this (vary.ts), never from the raw field, so a field the
 * client nominated as hop-by-hop, or one the cache drops, can neither select
 * nor store a variant the origin did not render for that value (RFC 9111
 * §4.1: the variant is selected by the fields of the request the response
 * answered — the forwarded one).
 */
export function forwardedValue (headers: IncomingHttpHeaders | Record<string, string | string[] | undefined>, name: string): string | string[] | undefined {
  return passesThrough(name, headers.connection) ? headers[name] : undefined
}

/**
 * The client address chain and scheme the origin sees. Its own function so
 * that trusted-hop handling (X-Forwarded-For / Forwarded from configured
 * proxies) can replace it; today the client is the socket's peer.
 */
export function forwardingFields (forwardedFor: string): { 'x-forwarded-for': string, 'x-forwarded-proto': string } {
  return { 'x-forwarded-for': forwardedFor, 'x-forwarded-proto': 'http' }
}

/** Headers for the upstream request (undici takes a plain object). */
export function forwardRequestHeaders (headers: IncomingHttpHeaders, opts: ForwardOptions): Record<string, string> {
  const connection = headers.connection
  const out: Record<string, string> = {}
  for (const name in headers) {
    // content-length: undici sets it from the buffered body.
    if (!passesThrough(name, connection)) continue
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
  if (opts.normalizeEncoding) out['accept-encoding'] = normalizeAcceptEncoding(forwardedValue(headers, 'accept-encoding') as string | undefined)
  const fwd = forwardingFields(opts.forwardedFor)
  out['x-forwarded-for'] = fwd['x-forwarded-for']
  out['x-forwarded-proto'] = fwd['x-forwarded-proto']
  // RFC 9110 §7.6.3: a proxy appends its own hop to Via (a Via the client named in Connection is not kept).
  const via = connection !== undefined && namedInConnection(connection, 'via') ? undefined : headers.via
  out.via = via ? `${String(via)}, 1.1 flashcrowd` : '1.1 flashcrowd'
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
 * A head delivery writes: flat [name, value, …] for `writeHead`, whose last
 * three fields are always Age, X-Cache and Cache-Status, in that order
 * (`buildHead`, `notModifiedHead`); a stored object's head for one coding
 * has Content-Length just before them. Delivery updates those values in
 * place; a writer that keeps serialized heads (hit-front.ts) may reuse its
 * bytes while `perSecondValues` are unchanged. The positions are named here
 * and nowhere else.
 */
export type PreparedHead = string[]

/** Value positions counted from the end of a PreparedHead. */
const FROM_END = { contentLength: 7, age: 5, xCache: 3, cacheStatus: 1 } as const
/** Fields that close every PreparedHead. */
const TAIL_FIELDS = 3

/** The values a delivered head changes from second to second: its Age and its Cache-Status. */
export function ageOf (head: PreparedHead): string { return head[head.length - FROM_END.age] }
export function cacheStatusOf (head: PreparedHead): string { return head[head.length - FROM_END.cacheStatus] }

/** A copy of a stored object's head for a part of its body (RFC 9110 §14.4): its length and Content-Range. */
export function forRange (head: PreparedHead, length: number, contentRange: string): PreparedHead {
  const n = head.length
  head[n - FROM_END.contentLength] = String(length)
  head.splice(n - 2 * TAIL_FIELDS, 0, 'content-range', contentRange)
  return head
}

/**
 * The stored fields as a PreparedHead for one content coding. Age, X-Cache
 * and Cache-Status close it so `refreshHeads` can update them in place.
 */
export function buildHead (o: CachedObject, encoding: Encoding): PreparedHead {
  const head: string[] = []
  let vary = o.headers.vary
  for (const name in o.headers) {
    if ((NOT_DELIVERED.has(name) && !(name === 'surrogate-key' && o.deliverTags === true)) || name === 'vary' || name === 'content-encoding') continue
    head.push(name, name === 'etag' ? etagForCoding(o.headers[name], encoding) : o.headers[name])
  }
  if (o.compressible && !(vary && /accept-encoding/i.test(vary))) vary = vary ? vary + ', Accept-Encoding' : 'Accept-Encoding'
  if (vary) head.push('vary', vary)
  const coding = encoding === 'identity' ? o.headers['content-encoding'] : encoding
  if (coding) head.push('content-encoding', coding)
  head.push('content-length', String(o.bodies[encoding]!.length))
  head.push('age', '0', 'x-cache', 'HIT', 'cache-status', '')
  return head
}

const ENCODINGS: readonly Encoding[] = ['identity', 'gzip', 'br']

/** Updates the per-second values of every prepared head (once a second per object, not per hit). */
export function refreshHeads (o: CachedObject, now: number, second: number): void {
  const age = String(currentAge(o, now))
  const status = cacheStatus('hit; ttl=' + Math.round((o.freshUntil - now) / 1000))
  for (const enc of ENCODINGS) {
    const head = o.heads[enc]
    if (head === undefined) continue
    const n = head.length
    head[n - FROM_END.age] = age
    head[n - FROM_END.cacheStatus] = status
  }
  o.heads.second = second
}

/** A head for non-hit deliveries (MISS, STALE, collapsed waits): a fresh copy with its own status values. */
export function headWith (o: CachedObject, encoding: Encoding, now: number, outcome: CacheOutcome, status: string): PreparedHead {
  let head = o.heads[encoding]
  if (!head) head = o.heads[encoding] = buildHead(o, encoding)
  const copy = head.slice()
  const n = copy.length
  copy[n - FROM_END.age] = String(currentAge(o, now))
  copy[n - FROM_END.xCache] = outcome
  copy[n - FROM_END.cacheStatus] = status
  return copy
}

/** RFC 9110 §15.4.5: the fields a 304 carries — the ETag of the coding a 200 would have sent. */
export function notModifiedHead (o: CachedObject, encoding: Encoding, now: number, outcome: CacheOutcome, status: string): PreparedHead {
  const head: string[] = []
  for (const name of ['cache-control', 'content-location', 'date', 'etag', 'expires', 'vary', 'last-modified']) {
    const v = o.headers[name]
    if (v !== undefined) head.push(name, name === 'etag' ? etagForCoding(v, encoding) : v)
  }
  head.push('age', String(currentAge(o, now)), 'x-cache', outcome, 'cache-status', status)
  return head
}
