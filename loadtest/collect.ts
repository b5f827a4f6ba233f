// The merged stream: SecondReports from every source (worker threads of
// this machine, or agents on other machines) added up into one group for the
// whole run, one per stage and one per endpoint, and a timeline.
//
// Memory is bounded whatever the run's length: the whole-run groups are a
// fixed number of HDR histograms (stages and endpoints are bounded by the
// scenario and the route table); a timeline bucket keeps its histogram only
// until every live source has reported past it (then it is sealed into a
// dozen numbers), and a run longer than MAX_TIMELINE_POINTS seconds gets
// wider buckets, so a 24 h soak keeps at most that many entries.
import { Group, decodeHistogram, round, type Stats } from './group.js'
import type { SecondReport } from './recorder.js'
import { shareOf, type PlannedStage, type PlannedStep, type Slice } from './stages.js'

export type { CacheState, CacheInfo } from './cache-headers.js'
export { parseCacheHeaders } from './cache-headers.js'
export { Group, type Stats, type LatencyStats, type CacheCounts, type RequestMeta, type GroupData } from './group.js'

export const MAX_TIMELINE_POINTS = 3600

/** One sealed timeline bucket (usually one second). */
export interface TimelineEntry {
  /** seconds since the run's start */
  t: number
  /** seconds this entry covers (1, or more on a very long run; less for the last) */
  span: number
  stage: string
  connections: number
  rate: number | null
  /** answered requests */
  requests: number
  /** open model: arrivals that came due in this bucket, sent, sent late, dropped (null in the closed model) */
  intended: number | null
  sent: number | null
  late: number | null
  dropped: number | null
  errors: number
  errorRate: number
  rps: number
  /** response bytes (head and body) read in this entry */
  bytes: number
  p50: number | null
  p90: number | null
  p99: number | null
  max: number | null
  hitRatio: number | null
}

/**
 * One endpoint's part of each timeline entry, column by column: index i
 * belongs to timeline[i] (0 requests and null latencies where it had none).
 * What `compare` estimates a run's own noise from, endpoint by endpoint.
 */
export interface EndpointSeconds {
  requests: number[]
  p50: Array<number | null>
  p99: Array<number | null>
}

export interface StageTiming { name: string, index: number, start: number, end: number }

/** One generator thread: on this machine, or a worker of an agent. */
export interface SourceInfo {
  id: string
  /** the machine it runs on: 'local', or the agent's id */
  agent: string
  host: string
  /** which part of each step it was given */
  slices: Slice[]
  /** share of the planned load this source was given (0..1) */
  share: number
  requests: number
  errors: number
  transportErrors: number
  /** seconds reported so far */
  reported: number
  /** when it was declared lost (seconds since start), null while it is fine */
  lostAt: number | null
  lostReason: string | null
  done: boolean
}

export interface CollectorOptions {
  plan: readonly PlannedStage[]
  /** seconds per timeline bucket; default: 1, wider for runs over MAX_TIMELINE_POINTS seconds */
  bucket?: number
  /** called once per sealed bucket, in order */
  onSeal?: (entry: TimelineEntry) => void
}

export function bucketFor (plannedDuration: number): number {
  return Math.max(1, Math.ceil(plannedDuration / MAX_TIMELINE_POINTS))
}

/** The planned step running at second t of the run (the last one after the end). */
export function stepAt (plan: readonly PlannedStage[], t: number): PlannedStep | undefined {
  let found: PlannedStep | undefined
  for (const st of plan) {
    for (const step of st.steps) {
      if (step.start <= t + 1e-9) found = step
      else return found
    }
  }
  return found
}

export class Collector {
  readonly total = new Group()
  readonly stages = new Map<string, Group>()
  readonly endpoints = new Map<string, Group>()
  readonly stageTimings: StageTiming[] = []
  readonly timeline: TimelineEntry[] = []
  /** endpoint → its part of each timeline entry */
  readonly endpointSeconds = new Map<string, EndpointSeconds>()
  readonly sources = new Map<string, SourceInfo>()
  readonly bucket: number
  readonly #plan: readonly PlannedStage[]
  /** open buckets: all of it, and per endpoint */
  readonly #open = new Map<number, { all: Group, byEndpoint: Map<string, Group> }>()
  readonly #onSeal: ((e: TimelineEntry) => void) | undefined
  /** buckets below this index are sealed */
  #sealed = 0
  #duration = 0
  #finished = false
  /** samples that arrived for an already sealed bucket: in the totals, not in the timeline */
  late = 0

  constructor (o: CollectorOptions) {
    this.#plan = o.plan
    const planned = o.plan.reduce((end, s) => Math.max(end, s.start + s.duration), 0)
    this.bucket = o.bucket ?? bucketFor(planned)
    this.#onSeal = o.onSeal
    for (const s of o.plan) this.stages.set(s.name, new Group())
  }

  addSource (id: string, o: { agent: string, host: string, slices: Slice[] }): SourceInfo {
    const s: SourceInfo = { id, agent: o.agent, host: o.host, slices: o.slices, share: shareOf(this.#plan, o.slices), requests: 0, errors: 0, transportErrors: 0, reported: 0, lostAt: null, lostReason: null, done: false }
    this.sources.set(id, s)
    return s
  }

  /** Adds one source's second. Reports of a lost source are dropped, so what the agents list shows adds up to the totals. */
  add (sourceId: string, r: SecondReport): void {
    const src = this.sources.get(sourceId)
    if (!src) throw new Error(`unknown source ${sourceId}`)
    if (src.lostAt !== null) return
    const b = Math.floor(r.t / this.bucket)
    let bucket: { all: Group, byEndpoint: Map<string, Group> } | undefined
    if (b >= this.#sealed) {
      bucket = this.#open.get(b)
      if (!bucket) this.#open.set(b, (bucket = { all: new Group('cell'), byEndpoint: new Map() }))
    }
    for (const c of r.cells) {
      const d = c.data
      const hist = decodeHistogram(d.hist)
      const stageName = this.#plan[c.stage]?.name ?? `stage-${c.stage}`
      let sg = this.stages.get(stageName)
      if (!sg) this.stages.set(stageName, (sg = new Group()))
      let eg = this.endpoints.get(c.endpoint)
      if (!eg) this.endpoints.set(c.endpoint, (eg = new Group()))
      this.total.addData(d, hist)
      sg.addData(d, hist)
      eg.addData(d, hist)
      if (bucket) {
        bucket.all.addData(d, hist)
        let be = bucket.byEndpoint.get(c.endpoint)
        if (!be) bucket.byEndpoint.set(c.endpoint, (be = new Group('cell')))
        be.addData(d, hist)
      } else this.late += d.requests + d.transportErrors
      src.requests += d.requests
      src.errors += d.errors
      src.transportErrors += d.transportErrors
    }
    // a partial last second is sealed by finish(), with its real length
    src.reported = Math.max(src.reported, r.partial ? r.t : r.t + 1)
    this.#trySeal()
  }

  /** A source ran a step from `start` to `end` (seconds since the run's start). */
  noteStep (stageIndex: number, start: number, end: number): void {
    const name = this.#plan[stageIndex]?.name ?? `stage-${stageIndex}`
    let st = this.stageTimings.find(s => s.index === stageIndex)
    if (!st) {
      st = { name, index: stageIndex, start, end }
      this.stageTimings.push(st)
      this.stageTimings.sort((a, b) => a.index - b.index)
    }
    st.start = Math.min(st.start, start)
    st.end = Math.max(st.end, end)
  }

  /** The source stopped reporting: its share is not waited for any more. */
  markLost (sourceId: string, at: number, reason: string): void {
    const src = this.sources.get(sourceId)
    if (!src || src.lostAt !== null || src.done) return
    src.lostAt = at
    src.lostReason = reason
    this.#trySeal()
  }

  markDone (sourceId: string): void {
    const src = this.sources.get(sourceId)
    if (src) src.done = true
    this.#trySeal()
  }

  /** Seconds every live source has reported. */
  get watermark (): number {
    let w = Infinity
    for (const s of this.sources.values()) if (s.lostAt === null && !s.done) w = Math.min(w, s.reported)
    return w
  }

  #trySeal (): void {
    if (this.#finished) return
    const w = this.watermark
    if (w === Infinity) return
    while ((this.#sealed + 1) * this.bucket <= w) this.#sealBucket(this.#sealed, this.bucket)
  }

  #sealBucket (b: number, span: number): void {
    const open = this.#open.get(b)
    const g = open?.all ?? new Group('cell')
    this.#open.delete(b)
    this.#sealed = b + 1
    const t = b * this.bucket
    const step = stepAt(this.#plan, t)
    const st = g.stats(span)
    // an open-model bucket without arrivals counts 0 of each; the closed model has none of them
    const none = step?.rate != null ? 0 : null
    const e: TimelineEntry = {
      t,
      span: round(span, 3),
      stage: step?.stage ?? '-',
      connections: step?.connections ?? 0,
      rate: step?.rate ?? null,
      requests: st.requests,
      intended: st.arrivals?.intended ?? none,
      sent: st.arrivals?.sent ?? none,
      late: st.arrivals?.late ?? none,
      dropped: st.arrivals?.dropped ?? none,
      errors: st.errors,
      errorRate: st.errorRate,
      rps: st.rps,
      bytes: st.bytes,
      p50: st.latency.p50,
      p90: st.latency.p90,
      p99: st.latency.p99,
      max: st.latency.max,
      hitRatio: st.cache.hitRatio
    }
    this.#sealEndpoints(open?.byEndpoint, span)
    this.timeline.push(e)
    this.#onSeal?.(e)
  }

  #sealEndpoints (byEndpoint: Map<string, Group> | undefined, span: number): void {
    const i = this.timeline.length
    for (const [endpoint, g] of byEndpoint ?? []) {
      let col = this.endpointSeconds.get(endpoint)
      if (!col) {
        // an endpoint first seen now had nothing in the entries before
        col = { requests: new Array<number>(i).fill(0), p50: new Array<number | null>(i).fill(null), p99: new Array<number | null>(i).fill(null) }
        this.endpointSeconds.set(endpoint, col)
      }
      const st = g.stats(span)
      col.requests.push(st.requests)
      col.p50.push(st.latency.p50)
      col.p99.push(st.latency.p99)
    }
    for (const col of this.endpointSeconds.values()) {
      if (col.requests.length > i) continue
      col.requests.push(0)
      col.p50.push(null)
      col.p99.push(null)
    }
  }

  /**
   * The run is over after `duration` seconds: seal what is left. A trailing
   * sliver (under half a bucket, the generators stopping their connections) would
   * show a meaningless rate; its samples stay in the totals.
   */
  finish (duration: number): void {
    if (this.#finished) return
    this.#duration = duration
    const end = duration / this.bucket
    while (this.#sealed < Math.ceil(end - 1e-9)) {
      const b = this.#sealed
      const span = Math.min(this.bucket, duration - b * this.bucket)
      if (span < this.bucket / 2 && b > 0) {
        this.#sealed = b + 1
        break
      }
      this.#sealBucket(b, span)
    }
    this.#open.clear()
    this.#finished = true
  }

  get duration (): number { return this.#duration }

  /** Buckets still holding a histogram (bounded by how far the slowest source lags). */
  get openBuckets (): number { return this.#open.size }

  /** Stats of every scope thresholds can name, `duration` seconds into the run. */
  scopes (duration: number): { total: Stats, stages: Map<string, Stats>, endpoints: Map<string, Stats> } {
    const stageStats = new Map<string, Stats>()
    for (const [name, g] of this.stages) {
      const tm = this.stageTimings.find(s => s.name === name)
      const planned = this.#plan.find(s => s.name === name)
      // a stage still running (live thresholds), or whose timing has not
      // arrived yet, counts on the planned clock up to now
      const start = tm?.start ?? planned?.start ?? 0
      const plannedEnd = planned ? planned.start + planned.duration : start
      const end = Math.min(duration, Math.max(tm?.end ?? start, Math.min(duration, plannedEnd)))
      stageStats.set(name, g.stats(tm || planned ? Math.max(0, end - start) : 0))
    }
    return {
      total: this.total.stats(duration),
      stages: stageStats,
      endpoints: new Map([...this.endpoints].map(([k, g]) => [k, g.stats(duration)]))
    }
  }
}
