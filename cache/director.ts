/**
 * The director: which upstream (frontend) serves a fetch. Round-robin or
 * least-connections over the healthy ones; health comes from active probes
 * and from passive ejection after consecutive failures; an idempotent
 * request that fails to connect is retried once on another upstream. One
 * undici Pool per upstream keeps connections alive.
 *
 * Health only steers traffic, it never stops it (issue 10: in front of a
 * site without /-/health the cache marked its only upstream down and
 * answered 503 to everything). As nginx does:
 * - a single upstream is never ejected;
 * - when every upstream is marked down, they are all still tried (the
 *   fetch's own failure, not a guess, then decides: stale-if-error or an
 *   error page);
 * - probes go to `probePath` (CACHE_PROBE_PATH, empty: none) and pass on
 *   the statuses `probeExpect` allows (CACHE_PROBE_EXPECT_STATUS). A 404 to
 *   an upstream's first answered probe means the path does not exist there,
 *   not that the upstream is down: a warning is logged once, and that
 *   upstream is probed for liveness only from then on (any HTTP answer is
 *   healthy; no answer, or a timeout, is not).
 *
 * An upstream named by DNS (compose's `frontend`) is re-resolved every
 * `dnsRefreshMs`: each address is its own upstream, so instances added by
 * `--scale` take traffic without a restart and removed ones are closed.
 */
import { Pool } from 'undici'
import type { Dispatcher } from 'undici'
import type { Clock } from './freshness.js'
import { DnsTargets, type Lookup } from '../common/dns-targets.js'
import type { Logger } from './engine.js'

export type DirectorMode = 'round-robin' | 'least-connections'

export interface DirectorOptions {
  upstreams: string[]
  mode: DirectorMode
  connections: number
  timeoutMs: number
  probeIntervalMs: number
  probeTimeoutMs: number
  /** Path probed on each upstream; empty: no active probes. Default /-/health. */
  probePath?: string
  /** Probe statuses that mean healthy (see `statusMatcher`). Default 200-399. */
  probeExpect?: string
  /** Where the probe-path warning goes. */
  logger?: Logger
  ejectAfterErrors: number
  ejectMs: number
  clock: Clock
  /** Re-resolution interval of DNS-named upstreams (0: resolve by undici per connection only). */
  dnsRefreshMs?: number
  lookup?: Lookup
  /** Called with each finished fetch (metrics). */
  onFetch?: (upstream: Upstream, seconds: number, ok: boolean) => void
}

export class Upstream {
  readonly url: string
  readonly pool: Pool
  /** Result of the last active probes (optimistic until the first one says otherwise). */
  probeHealthy = true
  probeFailures = 0
  /** Whether a probe has been answered yet (the first answer decides about a missing probe path). */
  probeAnswered = false
  /** 'status': the answer's status must be expected; 'liveness': the probe path does not exist here, any answer will do. */
  probeMode: 'status' | 'liveness' = 'status'
  consecutiveErrors = 0
  ejectedUntil = 0
  inflight = 0
  constructor (url: string, pool: Pool) { this.url = url; this.pool = pool }
}

export interface UpstreamResponse {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: Dispatcher.ResponseData['body']
  upstream: Upstream
}

export interface FetchRequest {
  method: string
  path: string
  headers: Record<string, string>
  body?: Buffer
  /** Interim (1xx) responses, e.g. 103 Early Hints, as they arrive (RFC 9110 §15.2). */
  onInfo?: (info: { statusCode: number, headers: Record<string, string | string[]> }) => void
}

/**
 * A status test from a list of codes and ranges ("200-399", "200,204"),
 * as CACHE_PROBE_EXPECT_STATUS is written (config.ts checks the form).
 */
export function statusMatcher (spec: string): (status: number) => boolean {
  const ranges = spec.split(',').map((part) => {
    const [lo, hi] = part.trim().split('-').map(Number)
    if (!Number.isInteger(lo) || (hi !== undefined && (!Number.isInteger(hi) || hi < lo))) throw new Error(`director: bad probe status list ${JSON.stringify(spec)}`)
    return [lo, hi ?? lo] as const
  })
  return (status) => ranges.some(([lo, hi]) => status >= lo && status <= hi)
}

export class NoUpstreamError extends Error {
  readonly code = 'FC_NO_UPSTREAM'
  constructor () { super('no healthy upstream') }
}

/** A request header undici would refuse: ours to fix, not the upstream's fault. */
export class RequestHeaderError extends Error {
  readonly code = 'FC_BAD_REQUEST_HEADER'
  constructor (name: string) { super(`request header ${name} cannot be forwarded`) }
}

/**
 * Fields undici refuses in a request (it frames the message itself). They
 * are refused here, before the Pool: in undici 7.30 a request refused inside
 * Pool.request keeps one of the pool's connection slots, so a few of them
 * would hang every later fetch to that upstream. headers.ts never forwards
 * them; this is the guard behind it.
 */
const UNDICI_REFUSES = ['expect', 'transfer-encoding', 'keep-alive', 'upgrade', 'connection'] as const

/** Errors that mean the request never reached the application, so replaying it is harmless. */
const CONNECT_ERRORS = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ENOTFOUND', 'EHOSTUNREACH', 'UND_ERR_SOCKET', 'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_CLOSED'])
const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE', 'TRACE'])

/**
 * Errors that say something about the upstream (it is down, unreachable,
 * slow, or broke the protocol), and so count towards passive ejection.
 * Anything else (undici refusing a request we built from a client's fields,
 * such as `expect`; an aborted or locally closed pool) is about the request or
 * about us: counting it would let any client eject every upstream with a few
 * odd requests and turn the whole site into 503s.
 */
const UPSTREAM_FAULTS = new Set([
  'ECONNREFUSED', 'ECONNRESET', 'ECONNABORTED', 'EPIPE', 'ETIMEDOUT', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH',
  'UND_ERR_SOCKET', 'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT',
  'UND_ERR_HEADERS_OVERFLOW', 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH', 'UND_ERR_RES_EXCEEDED_MAX_SIZE'
])

/** Whether a failed fetch counts against the upstream (network errors, timeouts, malformed responses). */
export function isUpstreamFault (err: unknown): boolean {
  const code = (err as { code?: unknown }).code
  if (typeof code !== 'string') return false
  // undici's HTTPParserError: the upstream's response did not parse.
  return UPSTREAM_FAULTS.has(code) || code.startsWith('HPE_')
}

export class Director {
  upstreams: Upstream[]
  readonly #o: DirectorOptions
  #next = 0
  #probeTimer: NodeJS.Timeout | undefined
  #closed = false
  readonly #dns: DnsTargets
  readonly #probePath: string
  readonly #expected: (status: number) => boolean
  #warnedMissingPath = false

  constructor (options: DirectorOptions) {
    if (options.upstreams.length === 0) throw new Error('director: UPSTREAMS must name at least one upstream')
    this.#o = options
    this.#probePath = options.probePath ?? '/-/health'
    if (this.#probePath !== '' && !this.#probePath.startsWith('/')) throw new Error(`director: probe path ${JSON.stringify(this.#probePath)} must start with /`)
    this.#expected = statusMatcher(options.probeExpect ?? '200-399')
    for (const raw of options.upstreams) {
      const url = new URL(raw)
      if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error(`director: upstream ${raw} must be http(s)`)
    }
    this.#dns = new DnsTargets({ urls: options.upstreams, intervalMs: options.dnsRefreshMs, lookup: options.lookup, onChange: (origins) => this.setOrigins(origins) })
    this.upstreams = this.#dns.origins.map((origin) => this.#upstream(origin))
  }

  #upstream (origin: string): Upstream {
    const pool = new Pool(origin, {
      connections: this.#o.connections,
      pipelining: 1,
      keepAliveTimeout: 30_000,
      headersTimeout: this.#o.timeoutMs,
      bodyTimeout: this.#o.timeoutMs,
      connectTimeout: Math.min(this.#o.timeoutMs, 5000)
    })
    return new Upstream(origin, pool)
  }

  /**
   * Replaces the upstream set: kept origins keep their pool and health,
   * new ones start optimistic (a probe follows at once), gone ones are closed
   * after their in-flight requests.
   */
  setOrigins (origins: string[]): void {
    if (this.#closed || origins.length === 0) return
    const current = new Map(this.upstreams.map((u) => [u.url, u]))
    const next = origins.map((o) => current.get(o) ?? this.#upstream(o))
    for (const u of this.upstreams) if (!origins.includes(u.url)) void u.pool.close().catch(() => {})
    this.upstreams = next
    this.#next = 0
    for (const u of next) if (!current.has(u.url)) void this.probe(u)
  }

  /** Resolves DNS-named upstreams once (start() keeps doing it). */
  async resolve (): Promise<void> { await this.#dns.refresh() }

  /** Whether active probes run (a probe path and an interval are set). */
  get probing (): boolean { return this.#probePath !== '' && this.#o.probeIntervalMs > 0 }

  /** Starts active probing; the first round runs at once so readiness is known quickly. */
  start (): void {
    if ((this.#o.dnsRefreshMs ?? 0) > 0) this.#dns.start()
    if (!this.probing || this.#probeTimer) return
    void this.probeAll()
    this.#probeTimer = setInterval(() => { void this.probeAll() }, this.#o.probeIntervalMs)
    this.#probeTimer.unref()
  }

  isUp (u: Upstream, now = this.#o.clock.now()): boolean {
    return u.probeHealthy && now >= u.ejectedUntil
  }

  anyHealthy (): boolean {
    const now = this.#o.clock.now()
    return this.upstreams.some((u) => this.isUp(u, now))
  }

  pick (exclude?: Upstream): Upstream | undefined {
    const now = this.#o.clock.now()
    const n = this.upstreams.length
    if (this.#o.mode === 'least-connections') {
      let best: Upstream | undefined
      for (let i = 0; i < n; i++) {
        // Start at a rotating offset so ties spread out instead of piling on the first.
        const u = this.upstreams[(this.#next + i) % n]
        if (u === exclude || !this.isUp(u, now)) continue
        if (!best || u.inflight < best.inflight) best = u
      }
      this.#next = (this.#next + 1) % n
      return best ?? this.#anyOf(exclude)
    }
    for (let i = 0; i < n; i++) {
      const u = this.upstreams[this.#next]
      this.#next = (this.#next + 1) % n
      if (u !== exclude && this.isUp(u, now)) return u
    }
    return this.#anyOf(exclude)
  }

  /**
   * Every upstream is marked down: try them anyway, in turn. Marks are
   * guesses (a probe path that went missing, errors that have passed); the
   * fetch finds out, and a tier never answers 503 while an upstream answers.
   */
  #anyOf (exclude: Upstream | undefined): Upstream | undefined {
    const n = this.upstreams.length
    for (let i = 0; i < n; i++) {
      const u = this.upstreams[this.#next]
      this.#next = (this.#next + 1) % n
      if (u !== exclude) return u
    }
    return undefined
  }

  /** One fetch, retried once on another upstream when it failed before reaching the application. */
  async fetch (req: FetchRequest): Promise<UpstreamResponse> {
    for (const name of UNDICI_REFUSES) if (req.headers[name] !== undefined) throw new RequestHeaderError(name)
    const first = this.pick()
    if (!first) throw new NoUpstreamError()
    try {
      return await this.#fetchFrom(first, req)
    } catch (err) {
      const code = (err as { code?: string }).code ?? ''
      if (!IDEMPOTENT.has(req.method) || !CONNECT_ERRORS.has(code)) throw err
      const second = this.pick(first)
      if (!second) throw err
      return await this.#fetchFrom(second, req)
    }
  }

  async #fetchFrom (u: Upstream, req: FetchRequest): Promise<UpstreamResponse> {
    const started = performance.now()
    u.inflight++
    try {
      const res = await u.pool.request({
        method: req.method as Dispatcher.HttpMethod,
        path: req.path,
        headers: req.headers,
        body: req.body,
        onInfo: req.onInfo,
        headersTimeout: this.#o.timeoutMs,
        bodyTimeout: this.#o.timeoutMs
      })
      // A 5xx counts against the upstream for passive ejection, but is still an answer.
      this.#record(u, res.statusCode < 500, (performance.now() - started) / 1000)
      return { status: res.statusCode, headers: res.headers, body: res.body, upstream: u }
    } catch (err) {
      // Only the upstream's own failures count; a request undici refused never reached it.
      if (isUpstreamFault(err)) this.#record(u, false, (performance.now() - started) / 1000)
      throw err
    } finally {
      u.inflight--
    }
  }

  #record (u: Upstream, ok: boolean, seconds: number): void {
    this.#o.onFetch?.(u, seconds, ok)
    if (ok) { u.consecutiveErrors = 0; return }
    u.consecutiveErrors++
    // A single upstream is never ejected: there is nowhere else to send its traffic.
    if (this.upstreams.length > 1 && u.consecutiveErrors >= this.#o.ejectAfterErrors) {
      // Passive ejection: stop sending traffic for a while; a good probe ends it early.
      u.ejectedUntil = this.#o.clock.now() + this.#o.ejectMs
      u.consecutiveErrors = 0
    }
  }

  async probeAll (): Promise<void> {
    await Promise.all(this.upstreams.map((u) => this.probe(u)))
  }

  /**
   * One active probe: healthy when the status is expected (or, in liveness
   * mode, on any answer); two failures in a row mark it sick. No probe path:
   * nothing is probed.
   */
  async probe (u: Upstream): Promise<boolean> {
    if (this.#closed || this.#probePath === '') return false
    let status: number | undefined
    try {
      const res = await u.pool.request({ method: 'GET', path: this.#probePath, headers: { 'user-agent': 'flashcrowd-cache-probe' }, headersTimeout: this.#o.probeTimeoutMs, bodyTimeout: this.#o.probeTimeoutMs })
      await res.body.dump()
      status = res.statusCode
    } catch { status = undefined }
    const ok = status !== undefined && this.#judge(u, status)
    if (status !== undefined) u.probeAnswered = true
    if (ok) {
      u.probeHealthy = true
      u.probeFailures = 0
      u.ejectedUntil = 0
    } else if (++u.probeFailures >= 2) {
      u.probeHealthy = false
    }
    return ok
  }

  #judge (u: Upstream, status: number): boolean {
    if (u.probeMode === 'liveness' || this.#expected(status)) return true
    if (status === 404 && !u.probeAnswered) {
      u.probeMode = 'liveness'
      if (!this.#warnedMissingPath) {
        this.#warnedMissingPath = true
        this.#o.logger?.warn({ upstream: u.url, probePath: this.#probePath, status },
          'health probe path not found on the upstream: it stays in service and is probed for liveness only; set CACHE_PROBE_PATH to a path it serves, or empty to disable probes')
      }
      return true
    }
    return false
  }

  /** Healthy (probe and ejection) and total upstreams, for the public health answer. */
  counts (): { healthy: number, total: number } {
    const now = this.#o.clock.now()
    let healthy = 0
    for (const u of this.upstreams) if (this.isUp(u, now)) healthy++
    return { healthy, total: this.upstreams.length }
  }

  async close (): Promise<void> {
    this.#closed = true
    this.#dns.stop()
    if (this.#probeTimer) clearInterval(this.#probeTimer)
    await Promise.all(this.upstreams.map((u) => u.pool.destroy().catch(() => {})))
  }
}
