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
 * promise of the next step when it has to wait. What a step decides goes to
 * the next one as a typed value on the context, never as loose fields: the
 * request's identity (recv, lookup), its part in coalescing (miss), and above
 * all its answer (`Answer`), which the step that decides it sets with the
 * name 'deliver' or 'synth'. A hit never leaves the first synchronous run of
 * the driver: no promise, no timer, no allocation beyond the context and its
 * answer.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Engine } from './engine.js'
import type { CachedObject } from './store.js'
import { policy } from './policy.js'
import { primaryKey, variantKey } from './vary.js'
import { requestNoStore, reuse, type Reuse } from './freshness.js'
import { cacheStatus, forwardRequestHeaders, responseHeaderRecord, setCookieList, type CacheOutcome } from './headers.js'
import { deliverObject, deliverSynth, deliverUpstream } from './deliver.js'
import { nextSequence, fetchForCache, flightOutcome, refreshInBackground, type FetchInfo, type PassedAnswer } from './fetch.js'
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
import { countServerError, type CacheCounters } from './metrics.js'
import type { NodeLock } from './node-lock.js'

export type StepName = 'recv' | 'internal' | 'purge' | 'pass' | 'lookup' | 'hit' | 'stale' | 'miss' | 'fetch' | 'deliver' | 'synth'
export type StepResult = StepName | null | Promise<StepName | null>
type Step = (ctx: Ctx) => StepResult

/**
 * What a request is answered with, as the step that decided it: the deliver
 * step writes the first two kinds, the synth step the third (both `write`).
 * One value, not fields each step might have set, so the writer never
 * guesses which.
 */
export type Answer =
  /**
   * A stored object, or one fetched for this request (stored or not).
   * `status`: its Cache-Status (RFC 9211); undefined for a plain HIT, which
   * is written with the object's prepared head.
   */
  | { kind: 'object', obj: CachedObject, outcome: 'HIT' | 'MISS' | 'STALE', status: string | undefined }
  /** An upstream answer passed on without being stored: a pass, an uncacheable answer, the origin's own 5xx. */
  | { kind: 'upstream', passed: PassedAnswer, outcome: 'MISS' | 'PASS', status: string }
  /** An answer the cache makes itself; `type` undefined: plain text. */
  | { kind: 'synth', status: number, body: string, headers: Record<string, string> | undefined, type: string | undefined }

/**
 * Which resource a request names. recv sets host, url and credentialed from
 * the validated head; lookup sets primary and key, again after every wait
 * (what the stored variants vary on may have changed meanwhile).
 */
interface RequestIdentity {
  host: string
  url: string
  /** It carries credentials: only objects the origin explicitly shared may answer it (RFC 9111 §3.5), and it never shares a fetch. */
  credentialed: boolean
  primary: string
  key: string
}

/**
 * A request's part in coalescing (coalesce.ts, and node-lock.ts across
 * workers): made at its first miss that leads or waits, so a hit never has one.
 */
interface Queueing {
  /** It fetches for this worker's waiters on its key: it must `finish` the flight. */
  leader: boolean
  /** It holds the node-wide fetch lock for its key: it must release it. */
  nodeLocked: boolean
  /** When waiting on other requests' fetches ends (set at its first wait: one wait in all). */
  waitUntil: number | undefined
  /** How many times it went back to lookup after another request's fetch (RFC 9211 §2.5 collapsed). */
  restarts: number
}

/** An interim (1xx) response from the origin, as the director hands it on. */
type Interim = Parameters<NonNullable<FetchInfo['onInfo']>>[0]

/** One request's state as it moves through the steps. */
export class Ctx {
  readonly e: Engine
  readonly req: IncomingMessage
  readonly res: ServerResponse
  /** The request's method (node's server always sets it). */
  readonly method: string
  /** When the request arrived, in fetch.ts `nextSequence` order: a revalidation it demanded must have started after this (see `lookup`). */
  readonly arrived: number
  /** The engine clock as of the current step: read on arrival and again after every wait. */
  now: number
  /** Which resource it names (recv, lookup). */
  readonly id: RequestIdentity = { host: '', url: '', credentialed: false, primary: '', key: '' }
  /** recv passed it (not cacheable by method): fetch forwards it, body and all, and stores nothing. */
  isPass = false
  /** Its part in coalescing, from its first miss that leads or waits. */
  queue: Queueing | undefined = undefined
  /**
   * A stored object it may not be given as is (lookup): revalidate it (RFC
   * 9111 §4.3), serve it while a background fetch refreshes it, or fall back
   * to it when the origin fails (`usableOnError`).
   */
  stale: CachedObject | undefined = undefined
  /** Set with the step name by the step that decides it (`deliver`, `synth` below); written by `write`. */
  answer: Answer | undefined = undefined

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
    const { id } = this
    return { host: id.host, url: id.url, primary: id.primary, lookupKey: id.key, headers: this.req.headers, forwardedFor: this.forwardedFor(), deliverTags: this.e.deliverTags, credentialed: id.credentialed, stale: this.stale, onInfo: this.onInfo() }
  }

  /** `#earlyHints` for an upstream request: made on the way upstream only, so a hit never allocates it. */
  onInfo (): (info: Interim) => void { return (info) => { this.#earlyHints(info) } }

  /**
   * RFC 8297 103 Early Hints from the origin go on to this client as they
   * come (never stored: RFC 9111 §3 stores final responses only). Not to an
   * HTTP/1.0 client (RFC 9110 §15.2), and node sends a 103 only with Link.
   */
  #earlyHints (info: Interim): void {
    if (info.statusCode !== 103 || this.res.headersSent || this.req.httpVersion !== '1.1') return
    try { this.res.writeEarlyHints(info.headers) } catch { /* a malformed Link is dropped, the final answer still goes */ }
  }
}

/** Refuses a request and closes its connection: requests already parsed behind it are dropped, never forwarded (client-errors.ts). */
function reject (ctx: Ctx, status: number, body: string, headers?: Record<string, string>): StepName {
  refuse(ctx.req.socket, ctx.res)
  return synth(ctx, status, body, { ...headers, connection: 'close' })
}

/** The request is answered by the cache itself: the synth step writes it. */
function synth (ctx: Ctx, status: number, body: string, headers?: Record<string, string>, type?: string): 'synth' {
  ctx.answer = { kind: 'synth', status, body, headers, type }
  return 'synth'
}

/** The request is answered with an object or an upstream answer: the deliver step writes it. */
function deliver (ctx: Ctx, answer: Exclude<Answer, { kind: 'synth' }>): 'deliver' {
  ctx.answer = answer
  return 'deliver'
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
  const ttl = Math.round((stale.freshUntil - ctx.e.clock.now()) / 1000)
  const status = cacheStatus(`fwd=stale${upstreamStatus ? `; fwd-status=${upstreamStatus}` : ''}${collapsed ? '; collapsed' : ''}; ttl=${ttl}; detail=${detail}`)
  return deliver(ctx, { kind: 'object', obj: stale, outcome: 'STALE', status })
}

/**
 * The fetch failed (`collapsed`: the fetch this request waited on): the
 * stale copy where one may stand in, the origin's own 5xx, or ours.
 */
function upstreamFailure (ctx: Ctx, err: Error, upstreamStatus?: number, answer?: PassedAnswer, collapsed = false): StepName {
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
    return deliver(ctx, { kind: 'upstream', passed: answer, outcome: 'MISS', status: cacheStatus(`fwd=stale; fwd-status=${upstreamStatus}${via}; detail=upstream-error`) })
  }
  const code = (err as { code?: string }).code ?? ''
  const status = err instanceof NoUpstreamError ? 503 : /TIMEOUT/.test(code) ? 504 : 502
  const message = status === 503 ? 'no healthy upstream' : status === 504 ? 'upstream timed out' : 'upstream unreachable'
  // Once per failed fetch, not once per waiter.
  if (!collapsed) ctx.e.logger.warn({ err: err.message, code, url: ctx.id.url }, 'fetch failed')
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
    ctx.id.url = withoutFragment(url)
    ctx.id.host = host
    switch (policy.recv(req)) {
      case 'internal': return 'internal'
      case 'purge': return 'purge'
      case 'pass': return 'pass'
      case 'reject': return synth(ctx, 400, 'bad request\n')
      case 'lookup':
        ctx.id.credentialed = policy.credentialed(req)
        return 'lookup'
    }
  },

  /** Health and metrics, answered by the cache itself. */
  internal (ctx) {
    const { e } = ctx
    if (ctx.id.url === '/-/health') {
      const h = healthAnswer(e, ctx.req.headers.authorization)
      return synth(ctx, h.status, h.body, undefined, h.type)
    }
    if (ctx.id.url === '/-/metrics') {
      // The scraper's door only (METRICS_TOKEN): counters and upstream addresses are not for visitors.
      const auth = authorize(ctx.req.headers.authorization, e.config.METRICS_TOKEN)
      if (auth === 'missing') return synth(ctx, 401, 'credentials required: send Authorization: Bearer <token>\n', { 'www-authenticate': 'Bearer' })
      if (auth === 'wrong') return synth(ctx, 403, 'these credentials may not do this\n')
      return e.metrics.render().then((text) => synth(ctx, 200, text, undefined, e.metrics.contentType))
    }
    return synth(ctx, 404, 'not found\n')
  },

  /** PURGE / BAN: answered by purge.ts, the one place that authenticates, applies and publishes them. */
  purge (ctx) {
    const { req, e } = ctx
    return answerInvalidation(purgeDeps(e), ctx.method, ctx.id.url, req.headers).then((a) => synth(ctx, a.status, a.body, a.headers, a.type))
  },

  /** Not cacheable by method: the request body is read first, so nothing half-framed ever goes upstream. */
  pass (ctx) {
    ctx.isPass = true
    return 'fetch'
  },

  /**
   * vcl_hash + lookup: find the variant, check it is usable for this
   * request, and decide what it is: a hit or a stale object is the answer
   * from here; anything else is a miss.
   */
  lookup (ctx) {
    const { e, req, id } = ctx
    id.primary = primaryKey(id.host, id.url)
    // A store shared by the node's workers: what a sibling stored or purged until now counts.
    e.store.refresh?.()
    id.key = variantKey(id.primary, e.store.varyOf(id.primary), req.headers)
    const now = ctx.now
    // A client's read: it counts towards admission (store.ts).
    const o = usableStored(e, id.key, id.credentialed, now, true)
    if (o === undefined) return 'miss'
    const verdict = reuse(o, now, req.headers['cache-control'], req.headers.pragma as string | undefined, ctx.arrived)
    if (verdict === 'fresh') {
      // RFC 9111 §4.2. A request that waited and then found what another's
      // fetch stored was collapsed into that fetch (RFC 9211 §2.5); a plain
      // HIT goes out with the object's prepared head (no status of its own).
      const collapsed = ctx.queue !== undefined && ctx.queue.restarts > 0
      ctx.answer = { kind: 'object', obj: o, outcome: 'HIT', status: collapsed ? cacheStatus('fwd=miss; collapsed') : undefined }
      return 'hit'
    }
    // Not usable as is: revalidate it (RFC 9111 §4.3), keeping it for
    // stale-if-error, or serve it stale within the window found.
    ctx.stale = o
    if (verdict === 'revalidate') return 'miss'
    ctx.answer = { kind: 'object', obj: o, outcome: 'STALE', status: cacheStatus(`hit; ttl=${Math.round((o.freshUntil - now) / 1000)}; detail=${verdict}`) }
    return 'stale'
  },

  /** vcl_hit: lookup found it fresh and made it the answer. */
  hit () {
    return 'deliver'
  },

  /** lookup made the stale object the answer; one background fetch refreshes it (RFC 5861 §3, RFC 9111 §4.2.4). */
  stale (ctx) {
    refreshInBackground(ctx.e, ctx.fetchInfo(), ctx.id.key)
    return 'deliver'
  },

  /** Join the fetch already under way for this key, or become its fetcher. */
  miss (ctx) {
    const { e, req, id } = ctx
    // A hit-for-miss key with nothing stored leaves waiters nothing to find,
    // and a credentialed request's answer may be its own: both fetch without
    // the queue. (A stored object to revalidate still queues.)
    if ((ctx.stale === undefined && e.coalescer.isUncacheable(id.key)) || id.credentialed) return 'fetch'
    // RFC 9111 §5.2.1.5: a no-store request's answer is for it alone, so it
    // never leads the queue (the waiters would find nothing stored); it may
    // still wait on someone else's fetch and be served what that stores.
    const noStore = req.headers['cache-control'] !== undefined && requestNoStore(req.headers['cache-control'])
    if (noStore) {
      if (!e.coalescer.busy(id.key)) return 'fetch'
    } else if (e.coalescer.lead(id.key)) {
      const q = queueing(ctx)
      q.leader = true
      return e.nodeLock === undefined ? 'fetch' : leadAcrossWorkers(ctx, q, e.nodeLock)
    }
    const q = queueing(ctx)
    // One wait in all, however many fetches it takes (issue 23: a waiter
    // never leaves the queue to fetch on its own, so a key is fetched once at a time).
    q.waitUntil ??= ctx.now + e.coalescer.timeoutMs
    let resume!: (next: StepName) => void
    const woken = new Promise<StepName>((resolve) => { resume = resolve })
    const queued = e.coalescer.wait(id.key, (reason) => {
      ctx.now = e.clock.now()
      resume(afterWait(ctx, q, reason))
    }, q.waitUntil - ctx.now)
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
    const { e, id } = ctx
    let outcome: FlightOutcome = DONE
    return fetchForCache(e, ctx.fetchInfo()).then((r) => {
      outcome = flightOutcome(r)
      ctx.now = e.clock.now()
      if (r.kind === 'error') return upstreamFailure(ctx, r.error, r.upstreamStatus, r.answer)
      if (r.kind === 'object') {
        const fwd = r.revalidated ? 'fwd=stale; fwd-status=304' : `fwd=${ctx.stale ? 'stale' : 'miss'}; fwd-status=${r.upstreamStatus}`
        return deliver(ctx, { kind: 'object', obj: r.object, outcome: 'MISS', status: cacheStatus(r.stored ? fwd + '; stored' : fwd + '; detail=not-stored') })
      }
      return deliver(ctx, { kind: 'upstream', passed: r, outcome: 'MISS', status: cacheStatus(`fwd=miss; fwd-status=${r.answer.status}; detail=${r.reason}`) })
    }, (err: Error) => {
      outcome = { kind: 'failed', error: err }
      throw err
    }).finally(() => {
      const q = ctx.queue
      if (q === undefined) return
      if (q.nodeLocked && e.nodeLock !== undefined) {
        q.nodeLocked = false
        // An answer that could not be stored marks the key hit-for-miss for the whole node.
        e.nodeLock.release(id.key, e.coalescer.isUncacheable(id.key))
      }
      if (q.leader) { q.leader = false; e.coalescer.finish(id.key, outcome) }
    })
  },

  /** vcl_deliver: the object or upstream answer a step decided on (`deliver`). */
  deliver: write,

  /** vcl_synth: the answer the cache made itself (`synth`). */
  synth: write
}

/**
 * Writes the request's answer and counts it. Every step that returns
 * 'deliver' or 'synth' does so through `deliver` or `synth`, which set the
 * answer with the name: an unset one is a bug in a step, and fails as one
 * (`fail`: logged, 500).
 */
function write (ctx: Ctx): null {
  const a = ctx.answer
  if (a === undefined) throw new Error('no answer was decided')
  const { e, req, res } = ctx
  const c = e.metrics.counters
  switch (a.kind) {
    case 'object':
      countOutcome(c, a.outcome)
      deliverObject(req, res, a.obj, ctx.now, a.outcome, a.status)
      return null
    case 'upstream':
      countOutcome(c, a.outcome)
      if (a.passed.answer.status >= 500) countServerError(c, a.passed.answer.status)
      deliverUpstream(req, res, a.passed, a.outcome, a.status, e.config.CACHE_SEND_TIMEOUT_MS)
      return null
    case 'synth':
      c.synth++
      if (a.status >= 500) countServerError(c, a.status)
      deliverSynth(res, a.status, a.body, a.headers, a.type)
      return null
  }
}

function countOutcome (c: CacheCounters, outcome: CacheOutcome): void {
  switch (outcome) {
    case 'HIT': c.hits++; break
    case 'MISS': c.misses++; break
    case 'STALE': c.stale++; break
    case 'PASS': c.pass++; break
  }
}

/** The request's part in coalescing, made when it first needs one. */
function queueing (ctx: Ctx): Queueing {
  return (ctx.queue ??= { leader: false, nodeLocked: false, waitUntil: undefined, restarts: 0 })
}

/** Back to lookup after another request's fetch: whatever it stored is looked up afresh, nothing kept from before. */
function again (ctx: Ctx, q: Queueing): 'lookup' {
  q.restarts++
  ctx.stale = undefined
  return 'lookup'
}

/**
 * Where a request that waited on another's fetch goes once woken: to look
 * again (something may be stored), to the object the fetch could not store
 * (when it is this request's variant), or to the fetch's failure — the stale
 * copy where one may stand in, else the failure itself (RFC 9211 collapsed).
 */
function afterWait (ctx: Ctx, q: Queueing, reason: WakeReason): StepName {
  switch (reason.kind) {
    case 'done':
      return again(ctx, q)
    case 'object': {
      const o = reason.object
      // The waiters coalesced on the key they looked up; the object may vary on fields they differ in.
      if (variantKey(ctx.id.primary, varyNamesOf(o), ctx.req.headers) !== o.key) return again(ctx, q)
      return deliver(ctx, { kind: 'object', obj: o, outcome: 'MISS', status: cacheStatus('fwd=miss; collapsed; detail=not-stored') })
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
function leadAcrossWorkers (ctx: Ctx, q: Queueing, lock: NodeLock): Promise<StepName> {
  const { e, id } = ctx
  return lock.acquire(id.key).then((outcome) => {
    ctx.now = e.clock.now()
    switch (outcome) {
      case 'granted': q.nodeLocked = true; return 'fetch'
      case 'pass': e.coalescer.markUncacheable(id.key); return 'fetch'
      case 'timeout': return 'fetch'
      case 'released':
        q.leader = false
        e.coalescer.finish(id.key)
        return again(ctx, q)
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
  const { host, url } = ctx.id
  const headers = forwardRequestHeaders(req.headers, { forwardedFor: ctx.forwardedFor(), host, dropConditionals: false, normalizeEncoding: false })
  let up
  try {
    up = await e.director.fetch({ method: ctx.method, path: url, headers, body, onInfo: ctx.onInfo() })
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
    const targets = unsafeInvalidationTargets(host, url, up.status, resHeaders.location, resHeaders['content-location'])
    for (const path of targets) applyEvent({ store: e.store, log: e.log, now: () => e.clock.now() }, { kind: 'url', path, host })
  }
  const passed: PassedAnswer = { answer: { status: up.status, headers: resHeaders, setCookie: setCookieList(up.headers) }, chunks: [], rest: up.body, release: () => {} }
  return deliver(ctx, { kind: 'upstream', passed, outcome: 'PASS', status: cacheStatus(`fwd=${req.method === 'GET' || req.method === 'HEAD' ? 'bypass' : 'method'}; fwd-status=${up.status}`) })
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
  ctx.e.logger.error({ err: err.message, stack: err.stack, url: ctx.id.url }, 'request failed')
  if (ctx.res.headersSent) { ctx.res.destroy(); return }
  // 5xx never shows internals: whatever answer was decided is replaced.
  synth(ctx, 500, 'internal error\n')
  write(ctx)
}
