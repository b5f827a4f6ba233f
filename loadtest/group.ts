// A group of responses: counters and an HDR latency histogram. Groups are
// what workers and agents send (GroupData, histogram in HdrHistogram's
// compressed base64 form) and what the collector adds up. Adding HDR
// histograms is exact: the merged p99 is the p99 of every latency together,
// within the histogram's precision (3 significant digits), never an average
// of percentiles.
import * as hdr from 'hdr-histogram-js'
import type { CacheState } from './cache-headers.js'

export interface RequestMeta {
  method: string
  endpoint: string
  /** GET or HEAD */
  read: boolean
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

/** Open model: what the arrival clock asked for and what the generator did with it. */
export interface ArrivalCounts {
  /** arrivals that came due */
  intended: number
  /** arrivals sent (on time or late) */
  sent: number
  /** sent more than LATE_MS after their intended time */
  late: number
  /** of the late, those sent late with a connection free: the generator's own delay (its CPU), not the target's */
  lagged: number
  /** never sent: no connection came free within the timeout (k6's dropped_iterations) */
  dropped: number
}

export interface ArrivalStats extends ArrivalCounts {
  /** late / intended */
  lateRatio: number
  /** dropped / intended */
  droppedRatio: number
  /** lagged / intended: above a few percent the generator, not the target, set the pace */
  laggedRatio: number
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
  /** open model only (null in the closed model) */
  arrivals: ArrivalStats | null
}

/** A group on the wire: JSON-safe, histogram as compressed base64 (microseconds). */
export interface GroupData {
  requests: number
  reads: number
  writes: number
  errors: number
  transportErrors: number
  timeouts: number
  bytes: number
  origin: number
  status: Record<string, number>
  cache: { hit: number, stale: number, miss: number, pass: number, none: number, collapsed: number }
  hist: string | null
  /** open model only */
  arrivals?: ArrivalCounts
}

const US = 1000 // histogram unit: microseconds

/**
 * 'cell': one second of one endpoint in one worker, short-lived, 32-bit
 * counts. 'aggregate': whole-run groups, 64-bit counts so a long soak cannot
 * overflow a bucket. Both are plain typed arrays: recording is a few
 * arithmetic operations (the packed form costs about 3× more per sample).
 */
export function newHistogram (kind: 'cell' | 'aggregate' = 'aggregate'): hdr.Histogram {
  return hdr.build({ bitBucketSize: kind === 'cell' ? 32 : 64, lowestDiscernibleValue: 1, highestTrackableValue: 120_000_000, numberOfSignificantValueDigits: 3, autoResize: true })
}

export function round (x: number, digits: number): number {
  const f = 10 ** digits
  return Math.round(x * f) / f
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
  readonly arrivals: ArrivalCounts = { intended: 0, sent: 0, late: 0, lagged: 0, dropped: 0 }
  readonly hist: hdr.Histogram

  constructor (kind: 'cell' | 'aggregate' = 'aggregate') {
    this.hist = newHistogram(kind)
  }

  /** An answer; in the open model `latencyUs` counts from the request's intended send time. */
  record (meta: RequestMeta, status: number, bytes: number, latencyUs: number, cache: CacheState | null, collapsed: boolean): void {
    this.requests++
    this.bytes += bytes
    this.status[status] = (this.status[status] ?? 0) + 1
    if (status >= 400) this.errors++
    if (meta.read) {
      this.reads++
      switch (cache) {
        case 'HIT': this.cache.hit++; break
        case 'STALE': this.cache.stale++; break
        case 'MISS': this.cache.miss++; break
        case 'PASS': this.cache.pass++; break
        default: this.cache.none++
      }
      if (collapsed) this.cache.collapsed++
      const fromCache = cache === 'HIT' || cache === 'STALE' || (cache === 'MISS' && collapsed)
      if (!fromCache) this.origin++
    } else {
      this.writes++
      this.origin++
    }
    this.hist.recordValue(latencyUs >= 1 ? Math.round(latencyUs) : 1)
  }

  recordTransportError (timeout: boolean): void {
    this.errors++
    this.transportErrors++
    if (timeout) this.timeouts++
  }

  get empty (): boolean {
    return this.requests === 0 && this.transportErrors === 0 && !this.#open
  }

  toData (): GroupData {
    return {
      requests: this.requests,
      reads: this.reads,
      writes: this.writes,
      errors: this.errors,
      transportErrors: this.transportErrors,
      timeouts: this.timeouts,
      bytes: this.bytes,
      origin: this.origin,
      status: { ...this.status },
      cache: { ...this.cache },
      hist: this.hist.totalCount > 0 ? hdr.encodeIntoCompressedBase64(this.hist) : null,
      ...(this.#open ? { arrivals: { ...this.arrivals } } : {})
    }
  }

  /** Open-model counts were recorded here. */
  get #open (): boolean {
    const a = this.arrivals
    return a.intended + a.sent + a.dropped > 0
  }

  /** Adds another group's counts; `hist` is the decoded histogram of `d` when the caller adds it to several groups. */
  addData (d: GroupData, hist?: hdr.Histogram | null): void {
    this.requests += d.requests
    this.reads += d.reads
    this.writes += d.writes
    this.errors += d.errors
    this.transportErrors += d.transportErrors
    this.timeouts += d.timeouts
    this.bytes += d.bytes
    this.origin += d.origin
    for (const [code, n] of Object.entries(d.status)) this.status[code] = (this.status[code] ?? 0) + n
    addCounts(this.cache, d.cache)
    if (d.arrivals) addCounts(this.arrivals, d.arrivals)
    const h = hist === undefined ? decodeHistogram(d.hist) : hist
    if (h) this.hist.add(h)
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
      },
      arrivals: this.#open ? arrivalStats(this.arrivals) : null
    }
  }
}

/** Adds each counter of `from` to the same counter of `into`. */
function addCounts<T extends object> (into: T, from: T): void {
  const sum = into as Record<string, number>
  for (const [k, v] of Object.entries(from)) sum[k] += v as number
}

function arrivalStats (a: ArrivalCounts): ArrivalStats {
  const of = (n: number): number => a.intended > 0 ? round(Math.min(1, n / a.intended), 6) : 0
  return { ...a, lateRatio: of(a.late), droppedRatio: of(a.dropped), laggedRatio: of(a.lagged) }
}

export function decodeHistogram (s: string | null): hdr.Histogram | null {
  return s ? hdr.decodeFromCompressedBase64(s, 64) : null
}
