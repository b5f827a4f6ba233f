/**
 * The fetch step's work (Varnish's cache_fetch): one upstream request for a
 * lookup miss or refresh, the storability decision, and the stored object —
 * or, for a pass, the upstream answer to hand on.
 */
import type { IncomingHttpHeaders } from 'node:http'
import type { Readable } from 'node:stream'
import type { Engine } from './engine.js'
import type { CachedObject } from './store.js'
import { makeObject, ownedBody } from './object.js'
import { evaluateResponse, requestNoStore, type PolicyRequest } from './freshness.js'
import { forwardRequestHeaders, responseHeaderRecord, setCookieList } from './headers.js'
import { variantKey } from './vary.js'
import { varyNamesOf } from './store.js'
import { policy } from './policy.js'
import type { UpstreamAnswer } from './deliver.js'
import { MAX_VALIDATOR_BYTES } from './request-head.js'
import { markFetch } from './invalidated-after.js'
import { DONE, type FlightOutcome } from './coalesce.js'

export interface FetchInfo {
  host: string
  url: string
  primary: string
  /** The key the request looked up (and coalesced on). */
  lookupKey: string
  /** The client's request headers (used for Vary and freshness). */
  headers: IncomingHttpHeaders
  /** X-Forwarded-For for the upstream: the verified hops, the visitor first (forwarded.ts). */
  forwardedFor: string
  credentialed: boolean
  /** A stored object being revalidated (RFC 9111 §4.3.1). */
  stale: CachedObject | undefined
  /** Passes interim responses (103 Early Hints) to the client this fetch answers; never stored. */
  onInfo?: (info: { statusCode: number, headers: Record<string, string | string[]> }) => void
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
  /**
   * The upstream failed. A 5xx counts as a failure only when a stored object
   * was being revalidated; its answer comes along, to pass on when that
   * object may not be used stale (the origin's own error page, not ours).
   */
  | { kind: 'error', error: Error, upstreamStatus?: number, answer?: { answer: UpstreamAnswer, chunks: Buffer[], rest: Readable | undefined } }

/** Reads a body until it ends or grows past `limit`; past it, the rest stays in the (paused) stream. */
let sequence = 0
/** A number larger than every one handed out before in this process: orders arrivals and fetch starts. */
export function nextSequence (): number { return ++sequence }

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

/**
 * Stores `o` unless an invalidation that applies to it arrived after the
 * fetch started (the page may predate the write that caused it), or the
 * store's admission test kept it out (admission.ts: read less often than
 * what it would push out). Returns why it was not stored, or null.
 */
function store (e: Engine, o: CachedObject, fetchStarted: number): 'invalidated-in-flight' | 'not-admitted' | null {
  if (e.log.invalidatedSince(fetchStarted, o, e.clock.now())) return 'invalidated-in-flight'
  let invalidated = false
  if (!e.store.put(o, { since: fetchStarted, onInvalidated: () => { invalidated = true } })) return invalidated ? 'invalidated-in-flight' : 'not-admitted'
  e.metrics.counters.stored++
  return null
}

/** Fetches for the cache: a miss, a revalidation, or a background refresh. */
export async function fetchForCache (e: Engine, info: FetchInfo): Promise<FetchResult> {
  // When the fetch starts: invalidations logged from here on apply to what it
  // brings back (store() and ban.ts compare against it).
  const requestTime = e.clock.now()
  const fetchSequence = nextSequence()
  // RFC 9111 §5.2.1.5: "MUST NOT store any part of either this request or any
  // response to it". It speaks for this request only: the answer goes to this
  // requester, and nothing the cache holds changes (no store, no delete, no
  // hit-for-miss marker), or one client could evict a page and its
  // stale-if-error safety net, or stop coalescing for everyone.
  const noStore = info.headers['cache-control'] !== undefined && requestNoStore(info.headers['cache-control'])
  const headers = forwardRequestHeaders(info.headers, { forwardedFor: info.forwardedFor, host: info.host, dropConditionals: true, normalizeEncoding: true })
  markFetch(headers, e.position)
  const stale = info.stale
  // RFC 9111 §4.3.1: validate the stored response with its validators.
  // A validator longer than the head reserve allows is not sent (request-head.ts): the fetch is then unconditional.
  if (stale?.etag !== undefined && stale.etag.length <= MAX_VALIDATOR_BYTES) headers['if-none-match'] = stale.etag
  else if (stale?.headers['last-modified'] !== undefined && stale.headers['last-modified'].length <= MAX_VALIDATOR_BYTES) headers['if-modified-since'] = stale.headers['last-modified']

  let up
  try {
    // A HEAD miss is fetched as GET so the object can be stored for both (RFC 9110 §9.3.2).
    up = await e.director.fetch({ method: 'GET', path: info.url, headers, onInfo: info.onInfo })
  } catch (err) {
    return { kind: 'error', error: err as Error }
  }
  const responseTime = e.clock.now()
  const resHeaders = responseHeaderRecord(up.headers)

  // RFC 5861 §4 stale-if-error covers 500, 502, 503 and 504; the caller decides whether stale may be used.
  if (up.status >= 500 && stale !== undefined) {
    const got = await collect(up.body, e.config.CACHE_MAX_OBJECT_BYTES).catch(() => ({ chunks: [], size: 0, complete: true }))
    const answer: UpstreamAnswer = { status: up.status, headers: resHeaders, setCookie: setCookieList(up.headers) }
    return { kind: 'error', error: new Error(`upstream answered ${up.status}`), upstreamStatus: up.status, answer: { answer, chunks: got.chunks, rest: got.complete ? undefined : up.body } }
  }

  if (up.status === 304 && stale !== undefined) {
    await up.body.dump().catch(() => {})
    // RFC 9111 §4.3.4: update the stored response's header fields from the 304.
    // RFC 9111 §4.3.4 selects the stored response by the 304's validator. A
    // 304 with none at all answers the one conditional we sent, built from
    // this stored response's validators alone: it can only mean this one
    // (refetching in full would double the origin's work for nothing).
    const noValidator = resHeaders.etag === undefined && resHeaders['last-modified'] === undefined
    const matches = noValidator || stale.policy.revalidatedPolicy(policyRequest(info, stale.headers), { status: 304, headers: resHeaders }).matches
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
        const o = makeObject(info, stale.status, merged, stale.bodies.identity, fresh, requestTime, responseTime, policyReq, stale.bodies, fetchSequence)
        // no-store: the validated object answers this request; the stored one stays as it was.
        const stored = !noStore && store(e, o, requestTime) === null
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
  const decision = policy.backendResponse(up.status, fresh, declared, e.config.CACHE_MAX_OBJECT_BYTES)
  const answer: UpstreamAnswer = { status: up.status, headers: resHeaders, setCookie }
  const key = variantKey(info.primary, varyNamesOf({ headers: resHeaders }), info.headers)

  if (noStore) {
    if (decision === 'too-big') return { kind: 'answer', answer, chunks: [], rest: up.body, reason: 'too-big' }
    const got = await collect(up.body, e.config.CACHE_MAX_OBJECT_BYTES)
    return { kind: 'answer', answer, chunks: got.chunks, rest: got.complete ? undefined : up.body, reason: decision === 'store' ? 'no-store-request' : fresh.reason ?? 'not-storable' }
  }

  if (decision !== 'store') {
    // Credentialed misses say nothing about anonymous requests, a 5xx is
    // transient, and an error caused by the request (431, 400, 413: design
    // §2.5) says nothing about the page: none of them marks the key, or one
    // client could turn coalescing off for everyone. Otherwise mark both the
    // variant and the key the waiters looked up, so none of them queues again.
    const requestCaused = policy.requestCaused(up.status)
    if (fresh.reason !== 'credentials' && up.status < 500 && !requestCaused) { e.coalescer.markUncacheable(key); e.coalescer.markUncacheable(info.lookupKey) }
    // Only an answer about the resource replaces what is stored; one about
    // the request never evicts the page or its stale-if-error fallback.
    if (stale !== undefined && !requestCaused) e.store.delete(stale.key)
    if (decision === 'too-big') return { kind: 'answer', answer, chunks: [], rest: up.body, reason: 'too-big' }
    const got = await collect(up.body, e.config.CACHE_MAX_OBJECT_BYTES)
    return { kind: 'answer', answer, chunks: got.chunks, rest: got.complete ? undefined : up.body, reason: decision === 'client-error' ? 'client-error' : fresh.reason ?? 'not-storable' }
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
  const body = ownedBody(got.chunks, got.size)
  const o = makeObject(info, up.status, resHeaders, body, fresh, requestTime, responseTime, policyReq, undefined, fetchSequence)
  e.coalescer.clearMarker(o.key)
  const notStored = store(e, o, requestTime)
  // Not admitted: the object answers this request only (it is complete and prepared).
  if (notStored === 'not-admitted') return { kind: 'object', object: o, revalidated: false, upstreamStatus: up.status, stored: false }
  if (notStored !== null) return { kind: 'answer', answer, chunks: [body], rest: undefined, reason: notStored }
  return { kind: 'object', object: o, revalidated: false, upstreamStatus: up.status, stored: true }
}

/**
 * What the requests waiting on this fetch get (coalesce.ts): a failure —
 * no answer, a timeout, a 5xx — is theirs too (the origin's own answer when
 * its body was read whole); a complete object that could not be stored is
 * handed over as is; anything else sends them to look again.
 */
export function flightOutcome (r: FetchResult): FlightOutcome {
  if (r.kind === 'error') {
    const whole = r.answer !== undefined && r.answer.rest === undefined ? { answer: r.answer.answer, chunks: r.answer.chunks } : undefined
    return { kind: 'failed', error: r.error, upstreamStatus: r.upstreamStatus, answer: whole }
  }
  if (r.kind === 'answer' && r.answer.status >= 500) {
    return { kind: 'failed', error: new Error(`upstream answered ${r.answer.status}`), upstreamStatus: r.answer.status, answer: r.rest === undefined ? { answer: r.answer, chunks: r.chunks } : undefined }
  }
  if (r.kind === 'object' && !r.stored) return { kind: 'object', object: r.object }
  return DONE
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
  if (e.nodeLock !== undefined) {
    // One refresh per node: a sibling refreshing the key already is enough.
    const lock = e.nodeLock
    lock.acquire(key).then((outcome) => {
      if (outcome === 'released' || outcome === 'pass') { e.coalescer.finish(key); return }
      backgroundFetch(e, info, key, () => { if (outcome === 'granted') lock.release(key, e.coalescer.isUncacheable(key)) })
    }, () => { e.coalescer.finish(key) })
    return
  }
  backgroundFetch(e, info, key, () => {})
}

function backgroundFetch (e: Engine, info: FetchInfo, key: string, done: () => void): void {
  // The refresh is the cache's own request (RFC 5861 §3), not the answer to
  // the client who triggered it (that client gets the stale object), so the
  // client's request directives (a no-store, RFC 9111 §5.2.1.5) do not apply to it.
  if (info.headers['cache-control'] !== undefined) info = { ...info, headers: { ...info.headers, 'cache-control': undefined } }
  let outcome: FlightOutcome = DONE
  fetchForCache(e, info).then((r) => {
    outcome = flightOutcome(r)
    if (r.kind === 'answer') r.rest?.destroy()
  }, (err: Error) => {
    outcome = { kind: 'failed', error: err }
    e.logger.warn({ err: err.message, url: info.url }, 'background refresh failed')
  }).finally(() => { done(); e.coalescer.finish(key, outcome) })
}
