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
import type { BodyBudget } from './request-body.js'
import type { UpstreamResponse } from './director.js'

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
  /** Keep Surrogate-Key in the delivered fields (a CDN in front purges by it). */
  deliverTags?: boolean
  /** A stored object being revalidated (RFC 9111 §4.3.1). */
  stale: CachedObject | undefined
  /** Passes interim responses (103 Early Hints) to the client this fetch answers; never stored. */
  onInfo?: (info: { statusCode: number, headers: Record<string, string | string[]> }) => void
}

/** An upstream answer passed on without being stored; `release` gives its buffered bytes back once its client has them. */
export interface PassedAnswer { answer: UpstreamAnswer, chunks: Buffer[], rest: Readable | undefined, release: () => void }

export type FetchResult =
  /**
   * A full object to deliver. `stored` is false when it went to this
   * requester only: the request said no-store (RFC 9111 §5.2.1.5), or an
   * invalidation arrived while it was in flight.
   */
  | { kind: 'object', object: CachedObject, revalidated: boolean, upstreamStatus: number, stored: boolean }
  /** Not stored (uncacheable, too big, no-store request, or invalidated while in flight): the answer goes to this client only. */
  | ({ kind: 'answer', reason: string } & PassedAnswer)
  /**
   * The upstream failed. A 5xx counts as a failure only when a stored object
   * was being revalidated; its answer comes along, to pass on when that
   * object may not be used stale (the origin's own error page, not ours).
   */
  | { kind: 'error', error: Error, upstreamStatus?: number, answer?: PassedAnswer }

let sequence = 0
/** A number larger than every one handed out before in this process: orders arrivals and fetch starts. */
export function nextSequence (): number { return ++sequence }

const NOTHING_HELD = (): void => {}

/**
 * Reads a body until it ends, grows past `limit`, or the worker's fetch
 * buffer (`budget`, CACHE_MAX_FETCH_BUFFER_BYTES) is spent; past either, the
 * rest stays in the (paused) stream, to be passed on at its client's pace.
 * The bytes read stay charged to the budget until `release` (issue 23,
 * finding 2: clients that stop reading unknown-length answers held 4 MiB
 * each, counted nowhere).
 */
export function collect (body: Readable, limit: number, budget: BodyBudget): Promise<{ chunks: Buffer[], size: number, complete: boolean, release: () => void }> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    let size = 0
    let held = 0
    const release = (): void => { budget.give(held); held = 0 }
    const cleanup = () => { body.off('data', onData); body.off('end', onEnd); body.off('error', onError); body.off('close', onClose) }
    const onData = (c: Buffer) => {
      chunks.push(c)
      size += c.length
      // Read already: charged whatever the budget says.
      budget.charge(c.length)
      held += c.length
      if (size > limit || budget.inflight > budget.max) { body.pause(); cleanup(); resolve({ chunks, size, complete: false, release }) }
    }
    const onEnd = () => { cleanup(); resolve({ chunks, size, complete: true, release }) }
    const onError = (err: Error) => { cleanup(); release(); reject(err) }
    // A stream destroyed before its end (client gone, parser error) never emits 'end'.
    const onClose = () => { cleanup(); release(); reject(new Error('body closed before its end')) }
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
 * on storing is no-store (RFC 9111 §5.2.1.5), which fetchOnce handles
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
function storeFetched (e: Engine, o: CachedObject, fetchStarted: number): 'invalidated-in-flight' | 'not-admitted' | null {
  if (e.log.invalidatedSince(fetchStarted, o, e.clock.now())) return 'invalidated-in-flight'
  let invalidated = false
  if (!e.store.put(o, { since: fetchStarted, onInvalidated: () => { invalidated = true } })) return invalidated ? 'invalidated-in-flight' : 'not-admitted'
  e.metrics.counters.stored++
  return null
}

/** One upstream answer, with what the steps after it need to know. */
interface Fetched {
  up: UpstreamResponse
  headers: Record<string, string>
  requestTime: number
  responseTime: number
  fetchSequence: number
  /** RFC 9111 §5.2.1.5: the request said no-store; its answer changes nothing the cache holds. */
  noStore: boolean
}

/**
 * Fetches for the cache: a miss, a revalidation, or a background refresh.
 * The fetch (`fetchOnce`); `revalidate` when a stored response was validated
 * (a 304); `decide` what may be stored, which `storeFetched` stores.
 */
export async function fetchForCache (e: Engine, info: FetchInfo): Promise<FetchResult> {
  let stale = info.stale
  for (;;) {
    const f = await fetchOnce(e, info, stale)
    if (f instanceof Error) return { kind: 'error', error: f }
    // RFC 5861 §4 stale-if-error covers 500, 502, 503 and 504; the caller decides whether stale may be used.
    if (f.up.status >= 500 && stale !== undefined) {
      const got = await collect(f.up.body, e.config.CACHE_MAX_OBJECT_BYTES, e.fetchBuffers).catch(() => ({ chunks: [], size: 0, complete: true, release: NOTHING_HELD }))
      const answer: UpstreamAnswer = { status: f.up.status, headers: f.headers, setCookie: setCookieList(f.up.headers) }
      return { kind: 'error', error: new Error(`upstream answered ${f.up.status}`), upstreamStatus: f.up.status, answer: { answer, chunks: got.chunks, rest: got.complete ? undefined : f.up.body, release: got.release } }
    }
    if (f.up.status === 304 && stale !== undefined) {
      await f.up.body.dump().catch(() => {})
      const r = revalidate(e, info, stale, f)
      if (r !== undefined) return r
      // The 304 does not select our stored response: drop it (unless this
      // request may not change the store) and fetch in full.
      if (!f.noStore) e.store.delete(stale.key)
      stale = undefined
      continue
    }
    return decide(e, info, stale, f)
  }
}

/** The upstream request: the client's fields as forwarded, and the stored validators when revalidating (RFC 9111 §4.3.1). */
async function fetchOnce (e: Engine, info: FetchInfo, stale: CachedObject | undefined): Promise<Fetched | Error> {
  // When the fetch starts: invalidations logged from here on apply to what it
  // brings back (storeFetched() and ban.ts compare against it).
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
  // A validator longer than the head reserve allows is not sent (request-head.ts): the fetch is then unconditional.
  if (stale?.etag !== undefined && stale.etag.length <= MAX_VALIDATOR_BYTES) headers['if-none-match'] = stale.etag
  else if (stale?.headers['last-modified'] !== undefined && stale.headers['last-modified'].length <= MAX_VALIDATOR_BYTES) headers['if-modified-since'] = stale.headers['last-modified']
  try {
    // A HEAD miss is fetched as GET so the object can be stored for both (RFC 9110 §9.3.2).
    const up = await e.director.fetch({ method: 'GET', path: info.url, headers, onInfo: info.onInfo })
    return { up, headers: responseHeaderRecord(up.headers), requestTime, responseTime: e.clock.now(), fetchSequence, noStore }
  } catch (err) {
    return err as Error
  }
}

/**
 * RFC 9111 §4.3.4: a 304 updates the stored response it selects; undefined
 * when it selects none (or the merged response is no longer storable).
 */
function revalidate (e: Engine, info: FetchInfo, stale: CachedObject, f: Fetched): FetchResult | undefined {
  const resHeaders = f.headers
  // §4.3.4 selects the stored response by the 304's validator. A 304 with
  // none at all answers the one conditional we sent, built from this stored
  // response's validators alone: it can only mean this one (refetching in
  // full would double the origin's work for nothing).
  const noValidator = resHeaders.etag === undefined && resHeaders['last-modified'] === undefined
  if (!noValidator && !stale.policy.revalidatedPolicy(policyRequest(info, stale.headers), { status: 304, headers: resHeaders }).matches) return undefined
  const merged: Record<string, string> = { ...stale.headers }
  // Age describes the message it came in (RFC 9111 §5.1, §4.2.3
  // age_value), not the stored representation: the stored response's Age
  // was already counted in its initial age, and this validation makes the
  // response as old as the 304 says (none: just validated). Keeping the old
  // value would count it again.
  delete merged.age
  for (const k in resHeaders) {
    if (k === 'content-length' || k === 'content-encoding' || k === 'transfer-encoding' || k === 'content-range') continue
    merged[k] = resHeaders[k]
  }
  const policyReq = policyRequest(info, merged)
  const fresh = evaluateResponse(e.Policy, policyReq, { status: stale.status, headers: merged }, f.requestTime, f.responseTime, freshnessOptions(e), info.credentialed)
  if (!fresh.storable) return undefined
  const o = makeObject({ source: info, status: stale.status, headers: merged, body: stale.bodies.identity, fresh, requestTime: f.requestTime, responseTime: f.responseTime, policyReq, previous: stale.bodies, fetchSequence: f.fetchSequence })
  // no-store: the validated object answers this request; the stored one stays as it was.
  const stored = !f.noStore && storeFetched(e, o, f.requestTime) === null
  return { kind: 'object', object: o, revalidated: true, upstreamStatus: 304, stored }
}

/** vcl_backend_response: what a full answer becomes — a stored object, or an answer for this requester only. */
async function decide (e: Engine, info: FetchInfo, stale: CachedObject | undefined, f: Fetched): Promise<FetchResult> {
  const { up, headers: resHeaders } = f
  const policyReq = policyRequest(info, resHeaders)
  const fresh = evaluateResponse(e.Policy, policyReq, { status: up.status, headers: resHeaders }, f.requestTime, f.responseTime, freshnessOptions(e), info.credentialed)
  const declared = resHeaders['content-length'] !== undefined ? Number(resHeaders['content-length']) : undefined
  const decision = policy.backendResponse(up.status, fresh, declared, e.config.CACHE_MAX_OBJECT_BYTES)
  const answer: UpstreamAnswer = { status: up.status, headers: resHeaders, setCookie: setCookieList(up.headers) }
  const key = variantKey(info.primary, varyNamesOf({ headers: resHeaders }), info.headers)
  const max = e.config.CACHE_MAX_OBJECT_BYTES
  /** The answer for this requester only: streamed when too big, else read (bounded) so a slow client does not hold the upstream connection. */
  const passOn = async (reason: string): Promise<FetchResult> => {
    if (decision === 'too-big') return { kind: 'answer', answer, chunks: [], rest: up.body, release: NOTHING_HELD, reason: 'too-big' }
    const got = await collect(up.body, max, e.fetchBuffers)
    return { kind: 'answer', answer, chunks: got.chunks, rest: got.complete ? undefined : up.body, release: got.release, reason }
  }

  if (f.noStore) return passOn(decision === 'store' ? 'no-store-request' : fresh.reason ?? 'not-storable')

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
    return passOn(decision === 'client-error' ? 'client-error' : fresh.reason ?? 'not-storable')
  }

  let got
  try {
    got = await collect(up.body, max, e.fetchBuffers)
  } catch (err) {
    return { kind: 'error', error: err as Error }
  }
  if (!got.complete) {
    const tooBig = got.size > max
    if (tooBig) {
      // Larger than it said (or it said nothing): pass it on, never store it.
      e.coalescer.markUncacheable(key)
      e.coalescer.markUncacheable(info.lookupKey)
    }
    // Otherwise the worker's fetch buffer is spent: this answer goes through at its client's pace, unstored.
    return { kind: 'answer', answer, chunks: got.chunks, rest: up.body, release: got.release, reason: tooBig ? 'too-big' : 'fetch-buffer-full' }
  }
  const body = ownedBody(got.chunks, got.size)
  // The object owns its body now (a copy): the store's budget counts it from here.
  got.release()
  const o = makeObject({ source: info, status: up.status, headers: resHeaders, body, fresh, requestTime: f.requestTime, responseTime: f.responseTime, policyReq, fetchSequence: f.fetchSequence })
  e.coalescer.clearMarker(o.key)
  const notStored = storeFetched(e, o, f.requestTime)
  // Not admitted: the object answers this request only (it is complete and prepared).
  if (notStored === 'not-admitted') return { kind: 'object', object: o, revalidated: false, upstreamStatus: up.status, stored: false }
  if (notStored !== null) return { kind: 'answer', answer: notStored === 'invalidated-in-flight' ? unshareable(answer) : answer, chunks: [body], rest: undefined, release: NOTHING_HELD, reason: notStored }
  return { kind: 'object', object: o, revalidated: false, upstreamStatus: up.status, stored: true }
}

/**
 * An answer fetched before an invalidation that arrived while it was in
 * flight: its requester may have it (they asked before the purge), but no
 * cache behind us may keep it (design §2.3: a purge is never undone by
 * re-caching) — an edge in front (CACHE_EDGE, a CDN) would otherwise store
 * the old page for its whole CDN-Cache-Control lifetime, where no purge
 * reaches it any more (RFC 9111 §5.2.2.5 no-store; RFC 9213 §2.1: the
 * targeted fields are dropped so they cannot override it).
 */
function unshareable (answer: UpstreamAnswer): UpstreamAnswer {
  const headers: Record<string, string> = { ...answer.headers, 'cache-control': 'no-store' }
  delete headers['cdn-cache-control']
  delete headers['flashcrowd-cache-control']
  delete headers['surrogate-control']
  delete headers.expires
  return { ...answer, headers }
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
  return { graceSeconds: e.config.CACHE_GRACE_SECONDS, defaultTtlSeconds: e.config.CACHE_DEFAULT_TTL_SECONDS, targets: e.targets }
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
    if (r.kind === 'answer') { r.rest?.destroy(); r.release() } else if (r.kind === 'error' && r.answer !== undefined) { r.answer.rest?.destroy(); r.answer.release() }
  }, (err: Error) => {
    outcome = { kind: 'failed', error: err }
    e.logger.warn({ err: err.message, url: info.url }, 'background refresh failed')
  }).finally(() => { done(); e.coalescer.finish(key, outcome) })
}
