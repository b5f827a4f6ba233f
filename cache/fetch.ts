/**
 * The fetch step's work (Varnish's cache_fetch): one upstream request for a
 * lookup miss or refresh, the storability decision, and the stored object —
 * or, for a pass, the upstream answer to hand on.
 */
import type { IncomingHttpHeaders } from 'node:http'
import type { Readable } from 'node:stream'
import type { Engine } from './engine.js'
import type { CachedObject } from './store.js'
import { evaluateResponse, requestNoStore, type Freshness, type PolicyRequest } from './freshness.js'
import { forwardRequestHeaders, responseHeaderRecord, setCookieList, buildHead } from './headers.js'
import { compressVariants, copyOut, isCompressible } from './compress.js'
import { variantKey } from './vary.js'
import { varyNamesOf } from './store.js'
import { policy } from './policy.js'
import { parseSurrogateKeys } from '../common/surrogate-keys.js'
import type { UpstreamAnswer } from './deliver.js'
import { markFetch } from './invalidated-after.js'

export interface FetchInfo {
  host: string
  url: string
  primary: string
  /** The key the request looked up (and coalesced on). */
  lookupKey: string
  /** The client's request headers (used for Vary and freshness). */
  headers: IncomingHttpHeaders
  clientIp: string
  credentialed: boolean
  /** A stored object being revalidated (RFC 9111 §4.3.1). */
  stale: CachedObject | undefined
}

export type FetchResult =
  /**
   * A full object to deliver. `stored` is false when it went to this
   * requester only: the request said no-store (RFC 9111 §5.2.1.5), or an
   * invalidation arrived while it was in flight.
   */
  | { kind: 'object', object: CachedObject, revalidated: boolean, upstreamStatus: number, stored: boolean }
  /** Not stored (uncacheable, too big, no-store request, or invalidated while in flight): the answer goes to this client only. */
  | { kind: 'answer', answer: UpstreamAnswer, chunks: Buffer[], rest: Readable | undefined, reason: string }
  /** The upstream failed (5xx counts only when a stale object could be used instead). */
  | { kind: 'error', error: Error, upstreamStatus?: number }

/** Reads a body until it ends or grows past `limit`; past it, the rest stays in the (paused) stream. */
export function collect (body: Readable, limit: number): Promise<{ chunks: Buffer[], size: number, complete: boolean }> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    let size = 0
    const cleanup = () => { body.off('data', onData); body.off('end', onEnd); body.off('error', onError); body.off('close', onClose) }
    const onData = (c: Buffer) => {
      chunks.push(c)
      size += c.length
      if (size > limit) { body.pause(); cleanup(); resolve({ chunks, size, complete: false }) }
    }
    const onEnd = () => { cleanup(); resolve({ chunks, size, complete: true }) }
    const onError = (err: Error) => { cleanup(); reject(err) }
    // A stream destroyed before its end (client gone, parser error) never emits 'end'.
    const onClose = () => { cleanup(); reject(new Error('body closed before its end')) }
    body.on('data', onData)
    body.on('close', onClose)
    body.on('end', onEnd)
    body.on('error', onError)
  })
}

function concatOwned (chunks: Buffer[], size: number): Buffer {
  const out = Buffer.allocUnsafeSlow(size)
  let off = 0
  for (const c of chunks) { c.copy(out, off); off += c.length }
  return out
}

/**
 * The request as http-cache-semantics needs to see it, and no more. The
 * library keeps the request's fields inside the stored policy whenever the
 * response has Vary (index.js constructor: `_reqHeaders`), so the client's
 * whole head (junk fields included) would stay in memory beside every object,
 * outside the byte budget (design §2.7). Its constructor reads only Host,
 * Authorization (presence), Cache-Control, and the Vary-named fields.
 *
 * Cache-Control is left out on purpose: the only request directive that bears
 * on storing is no-store (RFC 9111 §5.2.1.5), which fetchForCache handles
 * itself (the answer goes to that requester only, the key is not marked);
 * the library would make it look like an unstorable *response*. Request
 * directives that bear on reuse are checked at lookup (requestForbidsStored).
 */
function policyRequest (info: FetchInfo, responseHeaders: Record<string, string>): PolicyRequest {
  const headers: Record<string, string> = {}
  if (info.host !== '') headers.host = info.host
  // RFC 9111 §3.5: only whether the request was authenticated matters; the credential itself is not kept.
  if (info.headers.authorization !== undefined) headers.authorization = 'present'
  const names = varyNamesOf({ headers: responseHeaders })
  if (names !== null) {
    for (const name of names) {
      const v = info.headers[name]
      if (v !== undefined) headers[name] = Array.isArray(v) ? v.join(', ') : v
    }
  }
  return { method: 'GET', url: info.url, headers }
}

/** Bytes of a flat header record as stored (name, value and a little per-entry overhead). */
function recordBytes (h: Record<string, string>): number {
  let n = 0
  for (const k in h) n += k.length + h[k].length + 4
  return n
}

/** Builds the stored object from a storable response. */
export function makeObject (e: Engine, info: FetchInfo, status: number, headers: Record<string, string>, body: Buffer, fresh: Freshness, requestTime: number, responseTime: number, policyReq: PolicyRequest, previous?: CachedObject['bodies']): CachedObject {
  const varyNames = varyNamesOf({ headers })
  const compressible = isCompressible(headers['content-type'], headers['content-encoding'], body.length, 1024 * 1024)
  const bodies: CachedObject['bodies'] = { identity: body }
  // Compressed once per body: a revalidated object keeps the variants it had.
  if (compressible) Object.assign(bodies, previous?.gzip ? { gzip: previous.gzip, br: previous.br } : compressVariants(body))
  const headerBytes = recordBytes(headers)
  const lm = headers['last-modified'] !== undefined ? Date.parse(headers['last-modified']) : NaN
  const key = variantKey(info.primary, varyNames, info.headers)
  const tags = parseSurrogateKeys(headers['surrogate-key'])
  let tagBytes = 0
  for (const t of tags) tagBytes += t.length + 16
  // Everything the object keeps alive, so CACHE_MAX_BYTES bounds memory
  // (design §2.7): bodies; the stored fields, the prepared heads (arrays of
  // the same strings) and the policy's response fields (a copy when a
  // targeted field was substituted, freshness.ts); the request fields the
  // policy keeps (policyRequest); the key, primary key, host and URL strings
  // (separate flat strings once V8 has hashed them; the store's indexes refer
  // to the same ones); tags; and fixed bookkeeping (the object, its index
  // entries). Strings from node's parser are one byte per character.
  const stringBytes = key.length + info.primary.length + info.url.length + info.host.length
  const o: CachedObject = {
    key,
    primary: info.primary,
    host: info.host,
    url: info.url,
    status,
    headers,
    policy: fresh.policy,
    bodies,
    compressible,
    etag: headers.etag,
    lastModified: Number.isFinite(lm) ? lm : undefined,
    tags,
    responseTime,
    fetchStarted: requestTime,
    initialAge: fresh.initialAge,
    freshUntil: fresh.freshUntil,
    swrMs: fresh.swrMs,
    sieMs: fresh.sieMs,
    graceMs: fresh.graceMs,
    explicitlyShared: fresh.explicitlyShared,
    mustRevalidate: fresh.mustRevalidate,
    heads: {},
    headsSecond: -1,
    size: body.length + (bodies.gzip?.length ?? 0) + (bodies.br?.length ?? 0) + headerBytes * 4 + recordBytes(policyReq.headers) + stringBytes + tagBytes + 1024
  }
  for (const enc of ['identity', 'gzip', 'br'] as const) if (bodies[enc]) o.heads[enc] = buildHead(o, enc)
  return o
}

/**
 * Stores `o` unless an invalidation that applies to it arrived after the
 * fetch started (the page may predate the write that caused it).
 */
function store (e: Engine, o: CachedObject, fetchStarted: number): boolean {
  if (e.log.invalidatedSince(fetchStarted, o, e.clock.now())) return false
  e.store.put(o)
  e.metrics.counters.stored++
  // Only what this worker stored goes to its siblings (never a pass, a
  // hit-for-miss, a too-big or a no-store answer): they insert it unless
  // they saw a matching invalidation since `fetchStarted` (share.ts).
  e.share?.(o)
  return true
}

/** Fetches for the cache: a miss, a revalidation, or a background refresh. */
export async function fetchForCache (e: Engine, info: FetchInfo): Promise<FetchResult> {
  // When the fetch starts: invalidations logged from here on apply to what it
  // brings back (store() and ban.ts compare against it).
  const requestTime = e.clock.now()
  // RFC 9111 §5.2.1.5: "MUST NOT store any part of either this request or any
  // response to it". It speaks for this request only: the answer goes to this
  // requester, and nothing the cache holds changes (no store, no delete, no
  // hit-for-miss marker), or one client could evict a page and its
  // stale-if-error safety net, or stop coalescing for everyone.
  const noStore = info.headers['cache-control'] !== undefined && requestNoStore(info.headers['cache-control'])
  const headers = forwardRequestHeaders(info.headers, { clientIp: info.clientIp, host: info.host, dropConditionals: true, normalizeEncoding: true })
  markFetch(headers, e.position)
  const stale = info.stale
  // RFC 9111 §4.3.1: validate the stored response with its validators.
  if (stale?.etag !== undefined) headers['if-none-match'] = stale.etag
  else if (stale?.headers['last-modified'] !== undefined) headers['if-modified-since'] = stale.headers['last-modified']

  let up
  try {
    // A HEAD miss is fetched as GET so the object can be stored for both (RFC 9110 §9.3.2).
    up = await e.director.fetch({ method: 'GET', path: info.url, headers })
  } catch (err) {
    return { kind: 'error', error: err as Error }
  }
  const responseTime = e.clock.now()
  const resHeaders = responseHeaderRecord(up.headers)

  // RFC 5861 §4 stale-if-error covers 500, 502, 503 and 504; the caller decides whether stale may be used.
  if (up.status >= 500 && stale !== undefined) {
    await up.body.dump().catch(() => {})
    return { kind: 'error', error: new Error(`upstream answered ${up.status}`), upstreamStatus: up.status }
  }

  if (up.status === 304 && stale !== undefined) {
    await up.body.dump().catch(() => {})
    // RFC 9111 §4.3.4: update the stored response's header fields from the 304.
    const { matches } = stale.policy.revalidatedPolicy(policyRequest(info, stale.headers), { status: 304, headers: resHeaders })
    if (matches) {
      const merged: Record<string, string> = { ...stale.headers }
      // Age describes the message it came in (RFC 9111 §5.1, §4.2.3
      // age_value), not the stored representation: the stored response's
      // Age was already counted in its initial age, and this validation makes
      // the response as old as the 304 says (none: just validated). Keeping
      // the old value would count it again.
      delete merged.age
      for (const k in resHeaders) {
        if (k === 'content-length' || k === 'content-encoding' || k === 'transfer-encoding' || k === 'content-range') continue
        merged[k] = resHeaders[k]
      }
      const policyReq = policyRequest(info, merged)
      const fresh = evaluateResponse(e.Policy, policyReq, { status: stale.status, headers: merged }, requestTime, responseTime, freshnessOptions(e), info.credentialed)
      if (fresh.storable) {
        const o = makeObject(e, info, stale.status, merged, stale.bodies.identity, fresh, requestTime, responseTime, policyReq, stale.bodies)
        // no-store: the validated object answers this request; the stored one stays as it was.
        const stored = !noStore && store(e, o, requestTime)
        return { kind: 'object', object: o, revalidated: true, upstreamStatus: 304, stored }
      }
    }
    // The 304 does not select our stored response: drop it (unless this
    // request may not change the store) and fetch in full.
    if (!noStore) e.store.delete(stale.key)
    return fetchForCache(e, { ...info, stale: undefined })
  }

  const setCookie = setCookieList(up.headers)
  const policyReq = policyRequest(info, resHeaders)
  const fresh = evaluateResponse(e.Policy, policyReq, { status: up.status, headers: resHeaders }, requestTime, responseTime, freshnessOptions(e), info.credentialed)
  const declared = resHeaders['content-length'] !== undefined ? Number(resHeaders['content-length']) : undefined
  const decision = policy.backendResponse(fresh, declared, e.config.CACHE_MAX_OBJECT_BYTES)
  const answer: UpstreamAnswer = { status: up.status, headers: resHeaders, setCookie }
  const key = variantKey(info.primary, varyNamesOf({ headers: resHeaders }), info.headers)

  if (noStore) {
    if (decision === 'too-big') return { kind: 'answer', answer, chunks: [], rest: up.body, reason: 'too-big' }
    const got = await collect(up.body, e.config.CACHE_MAX_OBJECT_BYTES)
    return { kind: 'answer', answer, chunks: got.chunks, rest: got.complete ? undefined : up.body, reason: decision === 'store' ? 'no-store-request' : fresh.reason ?? 'not-storable' }
  }

  if (decision !== 'store') {
    // Credentialed misses say nothing about anonymous requests, and a 5xx is
    // transient: neither marks the key. Otherwise mark both the variant and the
    // key the waiters looked up, so none of them queues again.
    if (fresh.reason !== 'credentials' && up.status < 500) { e.coalescer.markUncacheable(key); e.coalescer.markUncacheable(info.lookupKey) }
    if (stale !== undefined) e.store.delete(stale.key)
    if (decision === 'too-big') return { kind: 'answer', answer, chunks: [], rest: up.body, reason: 'too-big' }
    const got = await collect(up.body, e.config.CACHE_MAX_OBJECT_BYTES)
    return { kind: 'answer', answer, chunks: got.chunks, rest: got.complete ? undefined : up.body, reason: fresh.reason ?? 'not-storable' }
  }

  let got
  try {
    got = await collect(up.body, e.config.CACHE_MAX_OBJECT_BYTES)
  } catch (err) {
    return { kind: 'error', error: err as Error }
  }
  if (!got.complete) {
    // Larger than it said (or it said nothing): pass it on, never store it.
    e.coalescer.markUncacheable(key)
    e.coalescer.markUncacheable(info.lookupKey)
    return { kind: 'answer', answer, chunks: got.chunks, rest: up.body, reason: 'too-big' }
  }
  const body = got.chunks.length === 1 ? copyOut(got.chunks[0]) : concatOwned(got.chunks, got.size)
  const o = makeObject(e, info, up.status, resHeaders, body, fresh, requestTime, responseTime, policyReq)
  e.coalescer.clearMarker(o.key)
  if (!store(e, o, requestTime)) {
    return { kind: 'answer', answer, chunks: [body], rest: undefined, reason: 'invalidated-in-flight' }
  }
  return { kind: 'object', object: o, revalidated: false, upstreamStatus: up.status, stored: true }
}

export function freshnessOptions (e: Engine) {
  return { graceSeconds: e.config.CACHE_GRACE_SECONDS, defaultTtlSeconds: e.config.CACHE_DEFAULT_TTL_SECONDS }
}

/**
 * Background refresh for stale-while-revalidate and grace: one per key
 * (the coalescer's flight), result stored for the next requests.
 */
export function refreshInBackground (e: Engine, info: FetchInfo, key: string): void {
  if (!e.coalescer.lead(key)) return
  // The refresh is the cache's own request (RFC 5861 §3), not the answer to
  // the client who triggered it (that client gets the stale object), so the
  // client's request directives (a no-store, RFC 9111 §5.2.1.5) do not apply to it.
  if (info.headers['cache-control'] !== undefined) info = { ...info, headers: { ...info.headers, 'cache-control': undefined } }
  fetchForCache(e, info).then((r) => {
    if (r.kind === 'answer') r.rest?.destroy()
  }, (err: Error) => {
    e.logger.warn({ err: err.message, url: info.url }, 'background refresh failed')
  }).finally(() => { e.coalescer.finish(key) })
}
