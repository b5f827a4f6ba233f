// Per-response samples, aggregated as they arrive: one group for the whole
// run, one per stage, per endpoint and per second. Latencies go into HDR
// histograms (microseconds, 3 significant digits), so memory stays bounded
// however long the run and percentiles are exact to 0.1 %.
import * as hdr from 'hdr-histogram-js'
import { isReadMethod } from './endpoints.js'

export type CacheState = 'HIT' | 'STALE' | 'MISS' | 'PASS'
export interface CacheInfo {
  /** null when the response carried neither X-Cache nor Cache-Status (not behind the cache) */
  state: CacheState | null
  /** RFC 9211 `collapsed`: the request waited on another request's fetch */
  collapsed: boolean
}

type HeaderBag = Record<string, string | string[] | undefined>

function header (headers: HeaderBag, name: string): string | undefined {
  for (const [k, v] of Object.entries(headers)) {
    if (k.toLowerCase() === name) return Array.isArray(v) ? v.join(', ') : v
  }
  return undefined
}

/**
 * Reads the cache outcome from `X-Cache` (HIT|MISS|STALE|PASS) and/or
 * `Cache-Status` (RFC 9211). X-Cache wins when present because it tells a
 * stale (grace) delivery apart from a hit; Cache-Status adds `collapsed`.
 * In a Cache-Status list (RFC 9211 §2: the cache nearest the origin first),
 * any member with `hit` means the response came from a cache.
 */
export function parseCacheHeaders (headers: HeaderBag): CacheInfo {
  const xCache = header(headers, 'x-cache')?.trim().toUpperCase()
  const cacheStatus = header(headers, 'cache-status')
  let state: CacheState | null = null
  let collapsed = false
  if (cacheStatus) {
    let hit = false
    let fwd: string | undefined
    for (const member of cacheStatus.split(',')) {
      const params = member.split(';').slice(1).map(p => p.trim().toLowerCase())
      for (const p of params) {
        if (p === 'hit') hit = true
        else if (p === 'collapsed') collapsed = true
        else if (p.startsWith('fwd=')) fwd = p.slice(4).replace(/^"|"$/g, '')
      }
    }
    if (hit) state = 'HIT'
    else if (fwd === 'bypass' || fwd === 'method' || fwd === 'request') state = 'PASS'
    else if (fwd !== undefined) state = 'MISS'
  }
  if (xCache) {
    const first = xCache.split(/[\s,]+/)[0]
    if (first === 'HIT' || first === 'STALE' || first === 'MISS' || first === 'PASS') state = first
  }
  return { state, collapsed }
}

export interface RequestMeta {
  method: string
  endpoint: string
}

export interface LatencyStats {
  min: number | null
  mean: number | null
  p50: number | null
  p90: number | null
  p95: number | null
  p99: number | null
  p99_9: number | null
  max: number | null
}

export interface CacheCounts {
  hit: number
  stale: number
  miss: number
  pass: number
  /** reads without a cache header */
  none: number
  collapsed: number
  /** (HIT + STALE) / reads that carried a cache header; null if none did */
  hitRatio: number | null
}

export interface Stats {
  requests: number
  duration: number
  rps: number
  reads: number
  writes: number
  /** transport errors + responses with status >= 400 */
  errors: number
  errorRate: number
  transportErrors: number
  timeouts: number
  bytes: number
  status: Record<string, number>
  non2xx: Record<string, number>
  cache: CacheCounts
  /** requests the origin (frontends) had to answer: misses, passes, writes, uncached reads; collapsed misses excluded */
  originRequests: number
  originPerRequest: number | null
  latency: LatencyStats
}

const US = 1000 // histogram unit: microseconds

function newHistogram (): hdr.Histogram {
  return hdr.build({ bitBucketSize: 'packed', lowestDiscernibleValue: 1, highestTrackableValue: 120_000_000, numberOfSignificantValueDigits: 3, autoResize: true })
}

export class Group {
  requests = 0
  reads = 0
  writes = 0
  errors = 0
  transportErrors = 0
  timeouts = 0
  bytes = 0
  origin = 0
  status: Record<string, number> = {}
  cache = { hit: 0, stale: 0, miss: 0, pass: 0, none: 0, collapsed: 0 }
  readonly hist = newHistogram()

  record (meta: RequestMeta, status: number, bytes: number, latencyUs: number, cache: CacheInfo, expectedIntervalUs: number): void {
    this.requests++
    this.bytes += bytes
    this.status[status] = (this.status[status] ?? 0) + 1
    if (status >= 400) this.errors++
    const read = isReadMethod(meta.method)
    if (read) {
      this.reads++
      switch (cache.state) {
        case 'HIT': this.cache.hit++; break
        case 'STALE': this.cache.stale++; break
        case 'MISS': this.cache.miss++; break
        case 'PASS': this.cache.pass++; break
        default: this.cache.none++
      }
      if (cache.collapsed) this.cache.collapsed++
      const fromCache = cache.state === 'HIT' || cache.state === 'STALE' || (cache.state === 'MISS' && cache.collapsed)
      if (!fromCache) this.origin++
    } else {
      this.writes++
      this.origin++
    }
    const v = Math.max(1, Math.round(latencyUs))
    // Open model: a response slower than the intended gap between two sends
    // hides the requests that should have been sent meanwhile (coordinated
    // omission); HDR back-fills them, as wrk2 and autocannon do.
    if (expectedIntervalUs > 0) this.hist.recordValueWithExpectedInterval(v, Math.round(expectedIntervalUs))
    else this.hist.recordValue(v)
  }

  recordTransportError (timeout: boolean): void {
    this.errors++
    this.transportErrors++
    if (timeout) this.timeouts++
  }

  stats (durationSec: number): Stats {
    const c = this.cache
    const withHeader = c.hit + c.stale + c.miss + c.pass
    const h = this.hist
    const has = h.totalCount > 0
    const ms = (us: number): number => Math.round(us) / US
    const attempts = this.requests + this.transportErrors
    const non2xx: Record<string, number> = {}
    for (const [code, n] of Object.entries(this.status)) if (Number(code) < 200 || Number(code) >= 300) non2xx[code] = n
    return {
      requests: this.requests,
      duration: round(durationSec, 3),
      rps: durationSec > 0 ? round(this.requests / durationSec, 2) : 0,
      reads: this.reads,
      writes: this.writes,
      errors: this.errors,
      errorRate: attempts > 0 ? round(this.errors / attempts, 6) : 0,
      transportErrors: this.transportErrors,
      timeouts: this.timeouts,
      bytes: this.bytes,
      status: { ...this.status },
      non2xx,
      cache: { ...c, hitRatio: withHeader > 0 ? round((c.hit + c.stale) / withHeader, 6) : null },
      originRequests: this.origin,
      originPerRequest: this.requests > 0 ? round(this.origin / this.requests, 6) : null,
      latency: {
        min: has ? ms(h.minNonZeroValue) : null,
        mean: has ? round(h.mean / US, 3) : null,
        p50: has ? ms(h.getValueAtPercentile(50)) : null,
        p90: has ? ms(h.getValueAtPercentile(90)) : null,
        p95: has ? ms(h.getValueAtPercentile(95)) : null,
        p99: has ? ms(h.getValueAtPercentile(99)) : null,
        p99_9: has ? ms(h.getValueAtPercentile(99.9)) : null,
        max: has ? ms(h.maxValue) : null
      }
    }
  }
}

export function round (x: number, digits: number): number {
  const f = 10 ** digits
  return Math.round(x * f) / f
}

/** What the load runs at, for one step of a stage (see stages.ts). */
export interface StepTarget {
  stage: string
  stageIndex: number
  connections: number
  /** requests per second in the open model, null in the closed model */
  rate: number | null
}

export interface StageTiming { name: string, index: number, start: number, end: number }

export interface Second {
  t: number
  stage: string
  connections: number
  rate: number | null
  group: Group
}

/**
 * Collects samples from autocannon. Wiring (see requests.ts and stages.ts):
 * a request's `onResponse` hook calls `noteHeaders` with the request's meta
 * and the response headers, and autocannon then emits `response` with the
 * latency in the same synchronous call, which lands in `onResponse` here.
 */
export class Collector {
  readonly total = new Group()
  readonly stages = new Map<string, Group>()
  readonly endpoints = new Map<string, Group>()
  readonly seconds: Second[] = []
  readonly stageTimings: StageTiming[] = []
  readonly #now: () => number
  #t0 = 0
  #end = 0
  #target: StepTarget = { stage: '-', stageIndex: -1, connections: 0, rate: null }
  #expectedIntervalUs = 0
  #pending: { meta: RequestMeta, cache: CacheInfo } | undefined

  constructor (options: { now?: () => number } = {}) {
    this.#now = options.now ?? (() => performance.now())
  }

  start (): void {
    this.#t0 = this.#now()
  }

  /** Seconds since start. */
  elapsed (): number {
    return (this.#now() - this.#t0) / 1000
  }

  get target (): StepTarget { return this.#target }

  beginStep (target: StepTarget): void {
    const t = this.elapsed()
    if (target.stage !== this.#target.stage || target.stageIndex !== this.#target.stageIndex) {
      const prev = this.stageTimings.at(-1)
      if (prev) prev.end = t
      this.stageTimings.push({ name: target.stage, index: target.stageIndex, start: t, end: t })
    }
    this.#target = target
    this.#expectedIntervalUs = target.rate ? (1e6 * target.connections) / target.rate : 0
    if (!this.stages.has(target.stage)) this.stages.set(target.stage, new Group())
  }

  finish (): void {
    this.#end = this.elapsed()
    const last = this.stageTimings.at(-1)
    if (last) last.end = this.#end
  }

  get duration (): number { return this.#end || this.elapsed() }

  #second (): Second {
    const t = Math.max(0, Math.floor(this.elapsed()))
    let s = this.seconds[t]
    if (!s) {
      const tg = this.#target
      s = { t, stage: tg.stage, connections: tg.connections, rate: tg.rate, group: new Group() }
      // fill gaps so the timeline has one entry per second
      for (let i = this.seconds.length; i < t; i++) {
        this.seconds[i] = { t: i, stage: tg.stage, connections: tg.connections, rate: tg.rate, group: new Group() }
      }
      this.seconds[t] = s
    }
    return s
  }

  noteHeaders (meta: RequestMeta, headers: HeaderBag): void {
    this.#pending = { meta, cache: parseCacheHeaders(headers) }
  }

  onResponse (status: number, bytes: number, latencyMs: number): void {
    const p = this.#pending ?? { meta: { method: 'GET', endpoint: '(unknown)' }, cache: { state: null, collapsed: false } }
    this.#pending = undefined
    this.record(p.meta, status, bytes, latencyMs, p.cache)
  }

  record (meta: RequestMeta, status: number, bytes: number, latencyMs: number, cache: CacheInfo): void {
    const us = latencyMs * US
    const iv = this.#expectedIntervalUs
    this.total.record(meta, status, bytes, us, cache, iv)
    this.#stageGroup().record(meta, status, bytes, us, cache, iv)
    let eg = this.endpoints.get(meta.endpoint)
    if (!eg) this.endpoints.set(meta.endpoint, (eg = new Group()))
    eg.record(meta, status, bytes, us, cache, iv)
    this.#second().group.record(meta, status, bytes, us, cache, iv)
  }

  onTransportError (err: Error): void {
    const timeout = /timed out/i.test(err.message)
    this.total.recordTransportError(timeout)
    this.#stageGroup().recordTransportError(timeout)
    this.#second().group.recordTransportError(timeout)
  }

  #stageGroup (): Group {
    let g = this.stages.get(this.#target.stage)
    if (!g) this.stages.set(this.#target.stage, (g = new Group()))
    return g
  }
}
