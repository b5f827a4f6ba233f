/**
 * The request state machine, Varnish-style: one table of steps, one function
 * per step, one driver loop.
 *
 *   hit front (hit-front.ts: narrow-form GET/HEAD, `plainHit`)
 *     ├─ fresh (freshness.ts `reuse`, as lookup decides) ── deliver (prepared bytes)
 *     └─ anything else ── node's server ── recv
 *
 *   recv ─┬─ internal ─────────────────────────────┐
 *         ├─ purge ──────────────────────────────── synth
 *         ├─ pass ── fetch ───────────────────────── deliver
 *         └─ lookup ─┬─ hit ──────────────────────── deliver
 *                    ├─ stale (refresh in background) deliver
 *                    └─ miss ─┬─ fetch ──────────── deliver | synth
 *                             └─ wait ─┬─ lookup (again: the fetch may have stored it)
 *                                      ├─ deliver (its unstored object, its stale fallback)
 *                                      └─ synth (its failure, or the wait timed out)
 *
 * A step returns the next step's name, null when the answer is written, or a
 * promise of the next step when it has to wait. A hit never leaves the first
 * synchronous run of the driver: no promise, no timer, no allocation beyond
 * the context.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Engine } from './engine.js'
import type { CachedObject } from './store.js'
import { policy } from './policy.js'
import { primaryKey, variantKey } from './vary.js'
import { requestNoStore, reuse, type Reuse } from './freshness.js'
import { cacheStatus, forwardRequestHeaders, responseHeaderRecord, setCookieList, type CacheOutcome } from './headers.js'
import { deliverObject, deliverSynth, deliverUpstream } from './deliver.js'
import { nextSequence, fetchForCache, flightOutcome, refreshInBackground, type FetchInfo, type FetchResult } from './fetch.js'
import { DONE, type FlightOutcome, type WakeReason } from './coalesce.js'
import { varyNamesOf } from './store.js'
import { applyEvent } from './invalidation.js'
import { answerInvalidation, type PurgeDeps } from './purge.js'
import { unsafeInvalidationTargets } from './unsafe-invalidation.js'
import { NoUpstreamError } from './director.js'
import { normalizeAuthority } from './authority.js'
import { forwardedFor } from './forwarded.js'
import { refuse } from './client-errors.js'
import { tooManyFields } from './request-head.js'
import { readRequestBody } from './request-body.js'
import { healthAnswer } from './health.js'
import type { HeadWriter } from './deliver.js'
import type { RequestView } from './policy.js'
import { authorize } from './auth.js'
import { countServerError } from './metrics.js'
import type { NodeLock } from './node-lock.js'

export type StepName = 'recv' | 'internal' | 'purge' | 'pass' | 'lookup' | 'hit' | 'stale' | 'miss' | 'fetch' | 'deliver' | 'synth'
export type StepResult = StepName | null | Promise<StepName | null>
type Step = (ctx: Ctx) => StepResult

/** One request's state as it moves through the steps. */
export class Ctx {
  readonly e: Engine
  readonly req: IncomingMessage
  readonly res: ServerResponse
  now: number
  /** When the request arrived, in fetch.ts `nextSequence` order: a revalidation it demanded must have started after this (see `lookup`). */
  readonly arrived: number
  host = ''
  url = ''
  primary = ''
  key = ''
  credentialed = false
  /** Skip the coalescing queue (credentialed requests, hit-for-miss keys). */
  uncoalesced = false
  leader = false
  /** This request holds the node-wide fetch lock for its key (node-lock.ts). */
  nodeLocked = false
  isPass = false
  restarts = 0
  /** The window lookup found a stale object in (its Cache-Status detail). */
  staleWindow: Exclude<Reuse, 'fresh' | 'revalidate'> = 'stale-while-revalidate'
  /** When waiting on other requests' fetches ends for this request (set at its first wait). */
  waitUntil: number | undefined = undefined
  /** The object to deliver. */
  obj: CachedObject | undefined = undefined
  /** A stored object that could not be used as is: revalidate it, or fall back to it on error. */
  stale: CachedObject | undefined = undefined
  fetched: FetchResult | undefined = undefined
  outcome: CacheOutcome = 'MISS'
  /** Cache-Status for non-hit deliveries (undefined: plain HIT with the prepared head). */
  status: string | undefined = undefined
  synthStatus = 500
  synthBody = ''
  synthHeaders: Record<string, string> | undefined = undefined
  synthType: string | undefined = undefined

  /** The request's method (node's server always sets it). */
  readonly method: string

  constructor (e: Engine, req: IncomingMessage, res: ServerResponse) {
    this.e = e
    this.req = req
    this.res = res
    this.method = req.method ?? 'GET'
    this.now = e.clock.now()
    this.arrived = nextSequence()
  }

  #forwardedFor: string | undefined = undefined
  /** Computed on the way upstream only: a hit never pays for it. */
  forwardedFor (): string { return (this.#forwardedFor ??= forwardedFor(this.req, this.e.trustProxy, this.e.cdn)) }

  fetchInfo (): FetchInfo {
    return { host: this.host, url: this.url, primary: this.primary, lookupKey: this.key, headers: this.req.headers, forwardedFor: this.forwardedFor(), deliverTags: this.e.deliverTags, credentialed: this.credentialed, stale: this.stale, onInfo: this.onInfo }
  }

  /**
   * RFC 8297 103 Early Hints from the origin go on to this client as they
   * come (never stored: RFC 9111 §3 stores final responses only). Not to an
   * HTTP/1.0 client (RFC 9110 §15.2), and node sends a 103 only with Link.
   */
  readonly onInfo = (info: { statusCode: number, headers: Record<string, string | string[]> }): void => {
    if (info.statusCode !== 103 || this.res.headersSent || this.req.httpVersion !== '1.1') return
    try { this.res.writeEarlyHints(info.headers) } catch { /* a malformed Link is dropped, the final answer still goes */ }
  }
}

/** Refuses a request and closes its connection: requests already parsed behind it are dropped, never forwarded (client-errors.ts). */
function reject (ctx: Ctx, status: number, body: string, headers?: Record<string, string>): StepName {
  refuse(ctx.req.socket, ctx.res)
  return synth(ctx, status, body, { ...headers, connection: 'close' })
}

function synth (ctx: Ctx, status: number, body: string, headers?: Record<string, string>): StepName {
  ctx.synthStatus = status
  ctx.synthBody = body
  ctx.synthHeaders = headers
  return 'synth'
}

/**
 * Whether `o` may be served stale because the origin failed: within its
 * stale-if-error window (RFC 5861 §4) or the opt-in grace, or — when no
 * upstream could answer at all — for as long as it is stored (RFC 9111
 * §4.2.4: a disconnected cache may serve stale). Never when the origin said
 * must-revalidate or no-cache (§5.2.2.2: a 504 instead), and never beyond
 * stale-if-error when it said s-maxage (§5.2.2.10).
 */
function usableOnError (o: CachedObject | undefined, now: number, disconnected = false): o is CachedObject {
  return o !== undefined && (now < o.freshUntil + Math.max(o.sieMs, o.graceMs) || (disconnected && !o.mustRevalidate))
}

/** No upstream answered at all (none healthy, connection refused or reset, timed out): the cache is disconnected. */
function isDisconnection (err: Error, upstreamStatus: number | undefined): boolean {
  return upstreamStatus === undefined && (err instanceof NoUpstreamError || /^(ECONNREFUSED|ECONNRESET|EHOSTUNREACH|ENOTFOUND|EAI_AGAIN|UND_ERR_(SOCKET|CONNECT_TIMEOUT|HEADERS_TIMEOUT|BODY_TIMEOUT|CLOSED))$/.test((err as { code?: string }).code ?? ''))
}

/** Delivers `stale` (the request's stored copy, found usable by `usableOnError`) in place of the failed fetch. */
function serveStaleOnError (ctx: Ctx, stale: CachedObject, detail: string, upstreamStatus?: number, collapsed = false): StepName {
  ctx.obj = stale
  ctx.outcome = 'STALE'
  const ttl = Math.round((stale.freshUntil - ctx.e.clock.now()) / 1000)
  ctx.status = cacheStatus(`fwd=stale${upstreamStatus ? `; fwd-status=${upstreamStatus}` : ''}${collapsed ? '; collapsed' : ''}; ttl=${ttl}; detail=${detail}`)
  return 'deliver'
}

/**
 * The fetch failed (`collapsed`: the fetch this request waited on): the
 * stale copy where one may stand in, the origin's own 5xx, or ours.
 */
function upstreamFailure (ctx: Ctx, err: Error, upstreamStatus?: number, answer?: Extract<FetchResult, { kind: 'error' }>['answer'], collapsed = false): StepName {
  const now = ctx.e.clock.now()
  if (usableOnError(ctx.stale, now)) {
    if (!collapsed) { answer?.rest?.destroy(); answer?.release() }
    return serveStaleOnError(ctx, ctx.stale, 'stale-if-error', upstreamStatus, collapsed)
  }
  if (usableOnError(ctx.stale, now, isDisconnection(err, upstreamStatus))) return serveStaleOnError(ctx, ctx.stale, 'disconnected', undefined, collapsed)
  const via = collapsed ? '; collapsed' : ''
  // The origin answered 5xx and nothing stored may stand in: its own answer
  // goes on as it came (not a synthetic 502 that hides what it said).
  if (answer !== undefined) {
    ctx.fetched = { kind: 'answer', ...answer, reason: 'upstream-error' }
    ctx.outcome = 'MISS'
    ctx.status = cacheStatus(`fwd=stale; fwd-status=${upstreamStatus}${via}; detail=upstream-error`)
    return 'deliver'
  }
  const code = (err as { code?: string }).code ?? ''
  const status = err instanceof NoUpstreamError ? 503 : /TIMEOUT/.test(code) ? 504 : 502
  const message = status === 503 ? 'no healthy upstream' : status === 504 ? 'upstream timed out' : 'upstream unreachable'
  // Once per failed fetch, not once per waiter.
  if (!collapsed) ctx.e.logger.warn({ err: err.message, code, url: ctx.url }, 'fetch failed')
  return synth(ctx, status, message + '\n', { 'retry-after': '1', 'x-cache': 'MISS', 'cache-status': cacheStatus(`fwd=miss${via}; detail=${status === 503 ? 'no-upstream' : 'upstream-error'}`), age: '0' })
}

/**
 * RFC 9110 §4.2.5: a fragment is for the user agent; one sent anyway names
 * the same resource, so it is neither keyed nor forwarded.
 */
function withoutFragment (url: string): string {
  const hash = url.indexOf('#')
  return hash === -1 ? url : url.slice(0, hash)
}

/** Whether an absolute-form target has a non-empty authority after `scheme://`. */
function hasAuthority (url: string): boolean {
  const at = url.indexOf('://')
  if (at === -1) return false
  const c = url.charCodeAt(at + 3)
  return !Number.isNaN(c) && c !== 47 /* / */ && c !== 63 /* ? */ && c !== 35 /* # */
}

function countHostHeaders (raw: string[]): number {
  let n = 0
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]
    if (name.length === 4 && name.toLowerCase() === 'host') n++
  }
  return n
}

/**
 * The stored object for `key` that this request may be given at all: within
 * its keep window (an expired one is dropped) and allowed for its
 * credentials. `count`: the read counts towards admission (store.ts).
 */
function usableStored (e: Engine, key: string, credentialed: boolean, now: number, count: boolean): CachedObject | undefined {
  const o = count ? e.store.lookup(key) : e.store.get(key)
  if (o === undefined) return undefined
  if (now >= o.freshUntil + policy.keepMs(o)) {
    e.store.delete(key)
    return undefined
  }
  return policy.hitAllowed(credentialed, o.explicitlyShared) ? o : undefined
}

/**
 * The hit front's question (hit-front.ts): is this request, already parsed
 * in the narrow form the front accepts (origin-form GET/HEAD, no body, no
 * duplicate fields), a plain HIT — the same outcome recv → lookup → hit
 * would reach? If so it is delivered through `res` and counted as a hit;
 * otherwise nothing is changed (not even the admission count) and the
 * request goes through the steps. The target, key and freshness decision
 * are lookup's own (`withoutFragment`, `variantKey`, freshness.ts `reuse`).
 */
export function plainHit (e: Engine, req: RequestView & { url: string }, res: HeadWriter): boolean {
  if (policy.recv(req) !== 'lookup') return false
  const host = normalizeAuthority(req.headers.host ?? '', 80)
  if (host === null) return false
  const primary = primaryKey(host, withoutFragment(req.url))
  e.store.refresh?.()
  const key = variantKey(primary, e.store.varyOf(primary), req.headers)
  const now = e.clock.now()
  const o = usableStored(e, key, policy.credentialed(req), now, false)
  // The same freshness decision as lookup's: only 'fresh' is a plain hit.
  if (o === undefined || reuse(o, now, req.headers['cache-control'], req.headers.pragma, nextSequence()) !== 'fresh') return false
  e.store.lookup(key) // served: the client's read counts now
  e.metrics.counters.hits++
  deliverObject(req, res, o, now, 'HIT', undefined)
  return true
}

export const steps: Record<StepName, Step> = {
  /** vcl_recv: framing and size checks the parser leaves to us, then the policy. */
  recv (ctx) {
    const { req, e } = ctx
    // More fields than the parser handed over: framing we cannot see (request-head.ts).
    if (tooManyFields(req, e.config.CACHE_MAX_HEADER_FIELDS)) return reject(ctx, 431, 'too many header fields\n')
    const te = req.headers['transfer-encoding']
    // RFC 9112 §6.1/§6.3: Transfer-Encoding with Content-Length, or any coding
    // other than a final chunked, cannot be framed unambiguously: reject and close.
    if (te !== undefined && (req.headers['content-length'] !== undefined || te.trim().toLowerCase() !== 'chunked')) {
      return reject(ctx, 400, 'ambiguous message framing\n')
    }
    // RFC 9112 §3.2: more than one Host is a 400, and so is an HTTP/1.1 request without one.
    const hosts = countHostHeaders(req.rawHeaders)
    if (hosts > 1) return reject(ctx, 400, 'more than one Host header\n')
    if (hosts === 0 && req.httpVersionMinor !== 0) return reject(ctx, 400, 'missing Host header\n')
    let url = req.url ?? ''
    if (url.length > e.config.CACHE_MAX_URL_BYTES) return synth(ctx, 414, 'request target too long\n')
    let host: string | null = req.headers.host ?? ''
    let defaultPort = 80
    if (url.charCodeAt(0) !== 47 /* / */) {
      // RFC 9112 §3.2.2: absolute-form carries the authority; it replaces Host
      // ("MUST ignore the received Host header field"). The key is built from
      // it, and fetch forwards this host, never the client's Host field.
      // RFC 9110 §4.2.1: an http(s) URI with an empty host is invalid (WHATWG
      // URL parsing would read `http:///m/x` as host `m`).
      if (!hasAuthority(url)) return synth(ctx, 400, 'bad request target\n')
      let parsed: URL
      try { parsed = new URL(url) } catch { return synth(ctx, 400, 'bad request target\n') }
      if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') return synth(ctx, 400, 'bad request target\n')
      // RFC 9110 §4.2.4: userinfo in an http(s) URI is deprecated and never names a different resource.
      if (parsed.username !== '' || parsed.password !== '') return synth(ctx, 400, 'bad request target\n')
      url = parsed.pathname + parsed.search
      host = parsed.host
      if (parsed.protocol === 'https:') defaultPort = 443
    }
    // The key and the forwarded Host come from one validated, normalised
    // authority (authority.ts): a Host carrying a path, userinfo or junk could
    // otherwise name another page's key.
    host = normalizeAuthority(host, defaultPort)
    if (host === null) return synth(ctx, 400, 'invalid Host\n')
    ctx.url = withoutFragment(url)
    ctx.host = host
    switch (policy.recv(req)) {
      case 'internal': return 'internal'
      case 'purge': return 'purge'
      case 'pass': return 'pass'
      case 'reject': return synth(ctx, 400, 'bad request\n')
      case 'lookup':
        ctx.credentialed = policy.credentialed(req)
        ctx.uncoalesced = ctx.credentialed
        return 'lookup'
    }
  },

  /** Health and metrics, answered by the cache itself. */
  internal (ctx) {
    const { e } = ctx
    if (ctx.url === '/-/health') {
      const h = healthAnswer(e, ctx.req.headers.authorization)
      ctx.synthType = h.type
      return synth(ctx, h.status, h.body)
    }
    if (ctx.url === '/-/metrics') {
      // The scraper's door only (METRICS_TOKEN): counters and upstream addresses are not for visitors.
      const auth = authorize(ctx.req.headers.authorization, e.config.METRICS_TOKEN)
      if (auth === 'missing') return synth(ctx, 401, 'credentials required: send Authorization: Bearer <token>\n', { 'www-authenticate': 'Bearer' })
      if (auth === 'wrong') return synth(ctx, 403, 'these credentials may not do this\n')
      return e.metrics.render().then((text) => {
        ctx.synthType = e.metrics.contentType
        return synth(ctx, 200, text)
      })
    }
    return synth(ctx, 404, 'not found\n')
  },

  /** PURGE / BAN: answered by purge.ts, the one place that authenticates, applies and publishes them. */
  purge (ctx) {
    const { req, e } = ctx
    return answerInvalidation(purgeDeps(e), ctx.method, ctx.url, req.headers).then((a) => {
      ctx.synthType = a.type
      return synth(ctx, a.status, a.body, a.headers)
    })
  },

  /** Not cacheable by method: the request body is read first, so nothing half-framed ever goes upstream. */
  pass (ctx) {
    ctx.isPass = true
    ctx.outcome = 'PASS'
    return 'fetch'
  },

  /** vcl_hash + lookup: find the variant, check it is usable for this request. */
  lookup (ctx) {
    const { e, req } = ctx
    ctx.primary = primaryKey(ctx.host, ctx.url)
    // A store shared by the node's workers: what a sibling stored or purged until now counts.
    e.store.refresh?.()
    ctx.key = variantKey(ctx.primary, e.store.varyOf(ctx.primary), req.headers)
    const now = ctx.now
    // A client's read: it counts towards admission (store.ts).
    const o = usableStored(e, ctx.key, ctx.credentialed, now, true)
    if (o === undefined) {
      if (e.coalescer.isUncacheable(ctx.key)) ctx.uncoalesced = true
      return 'miss'
    }
    const verdict = reuse(o, now, req.headers['cache-control'], req.headers.pragma as string | undefined, ctx.arrived)
    if (verdict === 'fresh') { ctx.obj = o; return 'hit' }
    if (verdict === 'revalidate') {
      // Revalidate (RFC 9111 §4.3); keep it for stale-if-error.
      ctx.stale = o
      return 'miss'
    }
    ctx.obj = o
    ctx.staleWindow = verdict
    return 'stale'
  },

  hit (ctx) {
    ctx.outcome = 'HIT'
    return 'deliver'
  },

  /** Deliver the stale object now; one background fetch refreshes it. */
  stale (ctx) {
    // lookup found this object stale within one of its windows.
    const o = ctx.obj
    if (o === undefined) return synth(ctx, 500, 'internal error\n')
    ctx.stale = o
    refreshInBackground(ctx.e, ctx.fetchInfo(), ctx.key)
    ctx.outcome = 'STALE'
    ctx.status = cacheStatus(`hit; ttl=${Math.round((o.freshUntil - ctx.now) / 1000)}; detail=${ctx.staleWindow}`)
    return 'deliver'
  },

  /** Join the fetch already under way for this key, or become its fetcher. */
  miss (ctx) {
    const { e, req } = ctx
    ctx.outcome = 'MISS'
    if (ctx.uncoalesced) return 'fetch'
    // RFC 9111 §5.2.1.5: a no-store request's answer is for it alone, so it
    // never leads the queue (the waiters would find nothing stored); it may
    // still wait on someone else's fetch and be served what that stores.
    const noStore = req.headers['cache-control'] !== undefined && requestNoStore(req.headers['cache-control'])
    if (noStore) {
      if (!e.coalescer.busy(ctx.key)) return 'fetch'
    } else if (e.coalescer.lead(ctx.key)) {
      ctx.leader = true
      return e.nodeLock === undefined ? 'fetch' : leadAcrossWorkers(ctx, e.nodeLock)
    }
    // One wait in all, however many fetches it takes (issue 23: a waiter
    // never leaves the queue to fetch on its own, so a key is fetched once at a time).
    ctx.waitUntil ??= ctx.now + e.coalescer.timeoutMs
    let resume!: (next: StepName) => void
    const woken = new Promise<StepName>((resolve) => { resume = resolve })
    const queued = e.coalescer.wait(ctx.key, (reason) => {
      ctx.now = e.clock.now()
      resume(afterWait(ctx, reason))
    }, ctx.waitUntil - ctx.now)
    if (queued === 'full') {
      if (usableOnError(ctx.stale, ctx.now)) return serveStaleOnError(ctx, ctx.stale, 'coalesce-full')
      return synth(ctx, 503, 'too many requests waiting for this page\n', { 'retry-after': '1', 'x-cache': 'MISS', 'cache-status': cacheStatus('fwd=miss; detail=coalesce-full') })
    }
    if (queued === false) return 'fetch' // cannot happen: lead() or busy() just said a fetch is under way
    return woken
  },

  /** vcl_backend_fetch + vcl_backend_response. */
  fetch (ctx) {
    if (ctx.isPass) return fetchPass(ctx)
    const { e } = ctx
    let outcome: FlightOutcome = DONE
    return fetchForCache(e, ctx.fetchInfo()).then((r) => {
      outcome = flightOutcome(r)
      ctx.fetched = r
      ctx.now = e.clock.now()
      if (r.kind === 'error') return upstreamFailure(ctx, r.error, r.upstreamStatus, r.answer)
      if (r.kind === 'object') {
        ctx.obj = r.object
        ctx.outcome = 'MISS'
        const fwd = r.revalidated ? 'fwd=stale; fwd-status=304' : `fwd=${ctx.stale ? 'stale' : 'miss'}; fwd-status=${r.upstreamStatus}`
        ctx.status = cacheStatus(r.stored ? fwd + '; stored' : fwd + '; detail=not-stored')
        return 'deliver'
      }
      ctx.outcome = 'MISS'
      ctx.status = cacheStatus(`fwd=miss; fwd-status=${r.answer.status}; detail=${r.reason}`)
      return 'deliver'
    }, (err: Error) => {
      outcome = { kind: 'failed', error: err }
      throw err
    }).finally(() => {
      if (ctx.nodeLocked && e.nodeLock !== undefined) {
        ctx.nodeLocked = false
        // An answer that could not be stored marks the key hit-for-miss for the whole node.
        e.nodeLock.release(ctx.key, e.coalescer.isUncacheable(ctx.key))
      }
      if (ctx.leader) { ctx.leader = false; e.coalescer.finish(ctx.key, outcome) }
    })
  },

  deliver (ctx) {
    const { e, req, res } = ctx
    const c = e.metrics.counters
    switch (ctx.outcome) {
      case 'HIT': c.hits++; break
      case 'MISS': c.misses++; break
      case 'STALE': c.stale++; break
      case 'PASS': c.pass++; break
    }
    if (ctx.obj !== undefined) {
      // Coalesced waiters got the object from another request's fetch (RFC 9211 §2.5 collapsed).
      if (ctx.restarts > 0 && ctx.outcome === 'HIT') ctx.status = cacheStatus('fwd=miss; collapsed')
      deliverObject(req, res, ctx.obj, ctx.now, ctx.outcome, ctx.status)
      return null
    }
    const r = ctx.fetched
    if (r !== undefined && r.kind === 'answer') {
      if (r.answer.status >= 500) countServerError(c, r.answer.status)
      deliverUpstream(req, res, r, ctx.outcome, ctx.status ?? cacheStatus('fwd=bypass'), e.config.CACHE_SEND_TIMEOUT_MS)
      return null
    }
    return synth(ctx, 500, 'internal error\n')
  },

  synth (ctx) {
    ctx.e.metrics.counters.synth++
    if (ctx.synthStatus >= 500) countServerError(ctx.e.metrics.counters, ctx.synthStatus)
    deliverSynth(ctx.res, ctx.synthStatus, ctx.synthBody, ctx.synthHeaders, ctx.synthType)
    return null
  }
}

/**
 * Where a request that waited on another's fetch goes once woken: to look
 * again (something may be stored), to the object the fetch could not store
 * (when it is this request's variant), or to the fetch's failure — the stale
 * copy where one may stand in, else the failure itself (RFC 9211 collapsed).
 */
function afterWait (ctx: Ctx, reason: WakeReason): StepName {
  switch (reason.kind) {
    case 'done':
      ctx.restarts++
      ctx.stale = undefined
      return 'lookup'
    case 'object': {
      const o = reason.object
      // The waiters coalesced on the key they looked up; the object may vary on fields they differ in.
      if (variantKey(ctx.primary, varyNamesOf(o), ctx.req.headers) !== o.key) {
        ctx.restarts++
        ctx.stale = undefined
        return 'lookup'
      }
      ctx.obj = o
      ctx.outcome = 'MISS'
      ctx.status = cacheStatus('fwd=miss; collapsed; detail=not-stored')
      return 'deliver'
    }
    case 'failed':
      // The answer's bytes are the leader's to release, once its own client has them.
      return upstreamFailure(ctx, reason.error, reason.upstreamStatus, reason.answer && { ...reason.answer, rest: undefined, release: () => {} }, true)
    case 'timeout':
      if (usableOnError(ctx.stale, ctx.now)) return serveStaleOnError(ctx, ctx.stale, 'coalesce-timeout')
      return synth(ctx, 504, 'timed out waiting for the upstream\n', { 'retry-after': '1', 'x-cache': 'MISS', 'cache-status': cacheStatus('fwd=miss; collapsed; detail=coalesce-timeout') })
  }
}

/**
 * The leader of this worker's waiting list asks the node for the key
 * (node-lock.ts): one worker fetches; a worker that waited for a sibling's
 * fetch looks in the shared store again, and wakes its own waiters to do the same.
 */
function leadAcrossWorkers (ctx: Ctx, lock: NodeLock): Promise<StepName> {
  const { e } = ctx
  return lock.acquire(ctx.key).then((outcome) => {
    ctx.now = e.clock.now()
    switch (outcome) {
      case 'granted': ctx.nodeLocked = true; return 'fetch'
      case 'pass': e.coalescer.markUncacheable(ctx.key); return 'fetch'
      case 'timeout': return 'fetch'
      case 'released':
        ctx.leader = false
        e.coalescer.finish(ctx.key)
        ctx.restarts++
        ctx.stale = undefined
        return 'lookup'
    }
  })
}

/** Reads the body of a passed request (bounded, request-body.ts), forwards it, and applies RFC 9111 §4.4 on success. */
async function fetchPass (ctx: Ctx): Promise<StepName> {
  const { e, req } = ctx
  const read = await readRequestBody(req, e.config.CACHE_MAX_BODY_BYTES, e.bodies)
  // Each refusal closes the connection: the rest of the body is not read, so nothing after it can be framed.
  if (read.kind === 'too-large') return reject(ctx, 413, 'request body too large\n')
  if (read.kind === 'busy') return reject(ctx, 503, 'too many request bodies in flight; retry\n', { 'retry-after': '1' })
  // Bad chunking and the like: the parser failed mid-body; nothing was forwarded.
  if (read.kind === 'malformed') return reject(ctx, 400, 'malformed request body\n')
  const body = read.kind === 'body' ? read.body : undefined
  // A passed answer goes to this client only: its own validators and Accept-Encoding go as they came.
  const headers = forwardRequestHeaders(req.headers, { forwardedFor: ctx.forwardedFor(), host: ctx.host, dropConditionals: false, normalizeEncoding: false })
  let up
  try {
    up = await e.director.fetch({ method: ctx.method, path: ctx.url, headers, body, onInfo: ctx.onInfo })
  } catch (err) {
    return upstreamFailure(ctx, err as Error)
  } finally {
    // The upstream has the body (or will never get it): its bytes go back to the budget.
    if (read.kind === 'body') read.release()
  }
  const resHeaders = responseHeaderRecord(up.headers)
  if (policy.invalidatesOnSuccess(ctx.method)) {
    // RFC 9111 §4.4, on this node only: invalidations caused by writes reach
    // every node (and every frontend) from the backend's outbox, the one
    // source of them (unsafe-invalidation.ts).
    const targets = unsafeInvalidationTargets(ctx.host, ctx.url, up.status, resHeaders.location, resHeaders['content-location'])
    for (const path of targets) applyEvent({ store: e.store, log: e.log, now: () => e.clock.now() }, { kind: 'url', path, host: ctx.host })
  }
  ctx.fetched = { kind: 'answer', answer: { status: up.status, headers: resHeaders, setCookie: setCookieList(up.headers) }, chunks: [], rest: up.body, release: () => {}, reason: 'pass' }
  ctx.status = cacheStatus(`fwd=${req.method === 'GET' || req.method === 'HEAD' ? 'bypass' : 'method'}; fwd-status=${up.status}`)
  return 'deliver'
}

/** What purge.ts needs of the engine. */
export function purgeDeps (e: Engine): PurgeDeps {
  return { store: e.store, log: e.log, now: () => e.clock.now(), bus: e.bus, token: e.config.ADMIN_TOKEN, logger: e.logger }
}

/** The driver loop: runs steps until one writes the answer; waits only where a step hands back a promise. */
export function drive (ctx: Ctx, first: StepName): void {
  let step: StepName | null = first
  try {
    while (step !== null) {
      const next: StepResult = steps[step](ctx)
      if (next === null || typeof next === 'string') { step = next; continue }
      next.then((s) => { if (s !== null) drive(ctx, s) }, (err: Error) => { fail(ctx, err) })
      return
    }
  } catch (err) {
    fail(ctx, err as Error)
  }
}

function fail (ctx: Ctx, err: Error): void {
  ctx.e.logger.error({ err: err.message, stack: err.stack, url: ctx.url }, 'request failed')
  if (ctx.res.headersSent) { ctx.res.destroy(); return }
  // 5xx never shows internals.
  ctx.synthHeaders = undefined
  synth(ctx, 500, 'internal error\n')
  steps.synth(ctx)
}
