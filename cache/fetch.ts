/**
 * The fetch step's work (Varnish's cache_fetch): one upstream request for a
 * lookup miss or refresh, the storability decision, and the stored object —
 * or, for a pass, the upstream answer to hand on.
 */
import type { IncomingHttpHeaders } from 'node:http'
import type { Readable } from 'node:stream'
import type { Engine } from './engine.js'
import type { CachedObject } from './store.js'
import { evaluateResponse, requestNoStore, type Freshness } from './freshness.js'
import { forwardRequestHeaders, responseHeaderRecord, setCookieList, buildHead } from './headers.js'
import { compressVariants, copyOut, isCompressible } from './compress.js'
import { variantKey } from './vary.js'
import { varyNamesOf } from './store.js'
import { policy } from './policy.js'
import { parseSurrogateKeys } from '../common/surrogate-keys.js'
import type { UpstreamAnswer } from './deliver.js'

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
  | { kind: 'stored', object: CachedObject, revalidated: boolean, upstreamStatus: number }
  /** Not stored (uncacheable, too big, or invalidated while in flight): the answer goes to this client only. */
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

function flatHeaders (h: IncomingHttpHeaders): Record<string, string> {
  const out: Record<string, string> = {}
  for (const k in h) { const v = h[k]; if (v !== undefined) out[k] = Array.isArray(v) ? v.join(', ') : v }
  return out
}

/** Builds the stored object from a storable response. */
export function makeObject (e: Engine, info: FetchInfo, status: number, headers: Record<string, string>, body: Buffer, fresh: Freshness, responseTime: number, previous?: CachedObject['bodies']): CachedObject {
  const varyNames = varyNamesOf({ headers })
  const compressible = isCompressible(headers['content-type'], headers['content-encoding'], body.length, 1024 * 1024)
  const bodies: CachedObject['bodies'] = { identity: body }
  // Compressed once per body: a revalidated object keeps the variants it had.
  if (compressible) Object.assign(bodies, previous?.gzip ? { gzip: previous.gzip, br: previous.br } : compressVariants(body))
  let headerBytes = 0
  for (const k in headers) headerBytes += k.length + headers[k].length + 4
  const lm = headers['last-modified'] !== undefined ? Date.parse(headers['last-modified']) : NaN
  const o: CachedObject = {
    key: variantKey(info.primary, varyNames, info.headers),
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
    tags: parseSurrogateKeys(headers['surrogate-key']),
    responseTime,
    storedAt: e.clock.now(),
    initialAge: fresh.initialAge,
    freshUntil: fresh.freshUntil,
    swrMs: fresh.swrMs,
    sieMs: fresh.sieMs,
    graceMs: fresh.graceMs,
    explicitlyShared: fresh.explicitlyShared,
    mustRevalidate: fresh.mustRevalidate,
    heads: {},
    headsSecond: -1,
    // Bodies, prepared heads (about twice the header bytes) and bookkeeping.
    size: body.length + (bodies.gzip?.length ?? 0) + (bodies.br?.length ?? 0) + headerBytes * 3 + 1024
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
  return true
}

/** Fetches for the cache: a miss, a revalidation, or a background refresh. */
export async function fetchForCache (e: Engine, info: FetchInfo): Promise<FetchResult> {
  const requestTime = e.clock.now()
  const headers = forwardRequestHeaders(info.headers, { clientIp: info.clientIp, dropConditionals: true })
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

  const policyReq = { method: 'GET', url: info.url, headers: flatHeaders(info.headers) }

  if (up.status === 304 && stale !== undefined) {
    await up.body.dump().catch(() => {})
    // RFC 9111 §4.3.4: update the stored response's header fields from the 304.
    const { matches } = stale.policy.revalidatedPolicy(policyReq, { status: 304, headers: resHeaders })
    if (matches) {
      const merged: Record<string, string> = { ...stale.headers }
      for (const k in resHeaders) {
        if (k === 'content-length' || k === 'content-encoding' || k === 'transfer-encoding' || k === 'content-range') continue
        merged[k] = resHeaders[k]
      }
      const fresh = evaluateResponse(e.Policy, policyReq, { status: stale.status, headers: merged }, requestTime, responseTime, freshnessOptions(e), info.credentialed)
      if (fresh.storable) {
        const o = makeObject(e, info, stale.status, merged, stale.bodies.identity, fresh, responseTime, stale.bodies)
        store(e, o, requestTime)
        return { kind: 'stored', object: o, revalidated: true, upstreamStatus: 304 }
      }
    }
    // The 304 does not select our stored response: drop it and fetch in full.
    e.store.delete(stale.key)
    return fetchForCache(e, { ...info, stale: undefined })
  }

  const setCookie = setCookieList(up.headers)
  const fresh = evaluateResponse(e.Policy, policyReq, { status: up.status, headers: resHeaders }, requestTime, responseTime, freshnessOptions(e), info.credentialed)
  if (requestNoStore(info.headers['cache-control'] as string | undefined)) fresh.storable = false
  const declared = resHeaders['content-length'] !== undefined ? Number(resHeaders['content-length']) : undefined
  const decision = policy.backendResponse(fresh, declared, e.config.CACHE_MAX_OBJECT_BYTES)
  const answer: UpstreamAnswer = { status: up.status, headers: resHeaders, setCookie }
  const key = variantKey(info.primary, varyNamesOf({ headers: resHeaders }), info.headers)

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
  const o = makeObject(e, info, up.status, resHeaders, body, fresh, responseTime)
  e.coalescer.clearMarker(o.key)
  if (!store(e, o, requestTime)) {
    return { kind: 'answer', answer, chunks: [body], rest: undefined, reason: 'invalidated-in-flight' }
  }
  return { kind: 'stored', object: o, revalidated: false, upstreamStatus: up.status }
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
  fetchForCache(e, info).then((r) => {
    if (r.kind === 'answer') r.rest?.destroy()
  }, (err: Error) => {
    e.logger.warn({ err: err.message, url: info.url }, 'background refresh failed')
  }).finally(() => { e.coalescer.finish(key) })
}
