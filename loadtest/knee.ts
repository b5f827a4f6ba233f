// The knee: the open-model rate rises in steps (a staircase of stages)
// until a threshold you name breaks over one whole step, or the generators
// cannot deliver the rate any more. The last step that held is what the tier
// (or the one role the URL points at) can take; capacity.ts plans from it.
//
// Steps run in the open model (arrivals on a clock, latencies from each
// request's intended time): a step whose generator fell behind its own clock
// (arrivals sent late although a connection was free: its CPU) is reported
// as the generator's limit, not the tier's. One such step does not end the
// search (a busy machine's hiccup is not the tier's knee): the next step is
// run and judged; a second in a row ends it, and the knee is then a lower
// bound of what the tier can take.
//
// Each step is a stage of one run, so the search works the same on one
// machine and over agents: a step is judged once every source has reported
// its last second, and a failed step stops every generator.
import type { Collector, TimelineEntry } from './collect.js'
import type { Stats } from './group.js'
import type { PlannedStage } from './stages.js'
import { evaluateThreshold, ThresholdError, type Threshold } from './thresholds.js'

export interface KneeSearchOptions {
  /** first rate, req/s */
  start: number
  /** added to the rate at each step, or a factor it is multiplied by */
  step: { add: number } | { factor: number }
  /** seconds per step */
  stepDuration: number
  /** the search stops after this rate even if nothing broke */
  maxRate: number
  /** what "holds" means: each is judged over one step */
  thresholds: Threshold[]
  /** a step also fails when the achieved rate is below this share of its target (default 0.9) */
  minAchieved?: number
  /** the most connections carrying the rate (--max-connections) */
  pool: number
  /** a failed step is the generator's limit when more than this share of its arrivals lagged (default 0.02) */
  maxLagged?: number
}

export const MAX_KNEE_STEPS = 60

/** Steps in a row the generator may fall behind on before the search stops. */
export const GENERATOR_STRIKES = 2

/** Whether a failed step ends the search: a target's failure does; the generator's only on its second strike in a row. */
function ends (limitedBy: KneeStep['limitedBy'], strikes: number): boolean {
  return limitedBy !== 'generator' || strikes >= GENERATOR_STRIKES
}

export interface KneeStep {
  stage: string
  rate: number
  achieved: number
  requests: number
  p50: number | null
  p99: number | null
  errorRate: number
  /** share of the arrivals sent over 10 ms late, and never sent (open model) */
  late: number
  dropped: number
  pass: boolean
  /** what broke, when it did */
  failed: string[]
  /** who set the limit of a failed step: the target, or the generator (it could not keep to its clock) */
  limitedBy: 'target' | 'generator' | null
}

export interface KneeResult {
  /** the URL searched */
  url: string
  thresholds: string[]
  minAchieved: number
  steps: KneeStep[]
  /** the highest rate that held over a whole step; null when the first step broke */
  lastPassingRate: number | null
  /** the first step that broke, null when every step up to the maximum held; `by` 'generator': the load generator's limit, so the knee is a lower bound */
  brokeAt: { rate: number, reasons: string[], by: 'target' | 'generator' } | null
  /** measured at the last passing step: what reached the origin and what was written, per request */
  hitRatio: number | null
  originShare: number | null
  writeShare: number | null
}

export function kneeRates (o: Pick<KneeSearchOptions, 'start' | 'step' | 'maxRate'>): number[] {
  const rates: number[] = []
  let r = o.start
  while (r <= o.maxRate + 1e-9 && rates.length < MAX_KNEE_STEPS) {
    const rounded = Math.max(1, Math.round(r))
    if (rates.at(-1) !== rounded) rates.push(rounded)
    const next = 'add' in o.step ? r + o.step.add : r * o.step.factor
    if (!(next > r)) break
    r = next
  }
  return rates
}

export function stageName (rate: number): string {
  return `rate-${rate}`
}

/** The staircase: one flat open-model stage per rate. */
export function staircase (o: KneeSearchOptions): PlannedStage[] {
  let t = 0
  let stepIndex = 0
  return kneeRates(o).map((rate, index) => {
    const st: PlannedStage = {
      name: stageName(rate),
      index,
      start: t,
      duration: o.stepDuration,
      from: rate,
      to: rate,
      steps: [{ stage: stageName(rate), stageIndex: index, index: stepIndex++, start: t, duration: o.stepDuration, connections: o.pool, rate }]
    }
    t += o.stepDuration
    return st
  })
}

/** Only whole-step thresholds make sense for a step. */
export function checkKneeThresholds (ts: readonly Threshold[]): void {
  const scoped = ts.find(x => x.scope !== 'total')
  if (scoped) throw new ThresholdError(`bad --knee "${scoped.expr}": a knee threshold is judged over each whole step, without {endpoint=…} or {stage=…}`)
  if (ts.length === 0) throw new ThresholdError('a knee search needs at least one --knee threshold, e.g. --knee p99<250 --knee errors<1%')
}

/**
 * A step's verdict. The achieved rate is its answered requests over its
 * planned length: every source runs the step on the common clock, so its
 * arrivals are due within that length (the actual span also holds the stop
 * of the connection loops, which would read as a shortfall).
 */
function judge (o: KneeSearchOptions, rate: number, duration: number, st: Stats): { failed: string[], limitedBy: KneeStep['limitedBy'] } {
  const failed: string[] = []
  for (const th of o.thresholds) {
    const r = evaluateThreshold(th, { total: st, stages: new Map(), endpoints: new Map() })
    if (!r.pass) failed.push(r.actual === null ? `${th.expr} (${r.note ?? 'no samples'})` : `${th.expr} (actual ${+r.actual.toFixed(3)})`)
  }
  const min = o.minAchieved ?? 0.9
  const achieved = achievedRate(st, duration)
  if (achieved < rate * min) failed.push(`achieved ${+achieved.toFixed(1)} req/s < ${Math.round(min * 100)}% of ${rate}`)
  if (failed.length === 0) return { failed, limitedBy: null }
  const a = st.arrivals
  if (a !== null && a.laggedRatio > (o.maxLagged ?? 0.02)) {
    failed.push(`the generator fell behind its clock: ${pct(a.laggedRatio)} of the arrivals left over 10 ms late with a connection free (its own CPU): the generator's limit, not the target's; add --workers or agents`)
    return { failed, limitedBy: 'generator' }
  }
  if (a !== null && a.lateRatio + a.droppedRatio > 0.02) failed.push(`${pct(a.lateRatio)} of the arrivals waited for one of the ${o.pool} connections, ${pct(a.droppedRatio)} dropped: the target held them`)
  return { failed, limitedBy: 'target' }
}

function pct (x: number): string {
  return `${+(x * 100).toFixed(1)}%`
}

function achievedRate (st: Stats, duration: number): number {
  return duration > 0 ? Math.round((st.requests / duration) * 100) / 100 : 0
}

/** The live check for runLoadTest: stops the run as soon as a finished step broke. */
export function kneeCheck (o: KneeSearchOptions, plan: readonly PlannedStage[]): (c: Collector, e: TimelineEntry) => { expr: string, actual: number | null } | null {
  const judged = new Set<string>()
  let strikes = 0
  return (c, e) => {
    const now = e.t + e.span
    for (const st of plan) {
      const rate = st.steps[0].rate ?? 0
      // a second's grace: answers to the step's last arrivals count for it
      if (judged.has(st.name) || st.start + st.duration + 1 > now + 1e-6) continue
      judged.add(st.name)
      const stats = c.scopes(now).stages.get(st.name)
      if (!stats) continue
      const { failed, limitedBy } = judge(o, rate, st.duration, stats)
      strikes = limitedBy === 'generator' ? strikes + 1 : 0
      if (failed.length > 0 && ends(limitedBy, strikes)) return { expr: `knee at ${rate} req/s: ${failed.join('; ')}`, actual: null }
    }
    return null
  }
}

/** The curve and the knee, from a finished run's stages. */
export function kneeResult (o: KneeSearchOptions, url: string, stages: ReadonlyArray<{ name: string, stats: Stats, planned: { to: number, duration: number }, end: number, start: number }>): KneeResult {
  const steps: KneeStep[] = []
  let strikes = 0
  let end: KneeStep | undefined
  for (const st of stages) {
    // a step cut short by the stop (or never run) is not judged
    if (st.stats.requests === 0 || st.end - st.start < st.planned.duration * 0.9) continue
    const { failed, limitedBy } = judge(o, st.planned.to, st.planned.duration, st.stats)
    steps.push({
      stage: st.name,
      rate: st.planned.to,
      achieved: achievedRate(st.stats, st.planned.duration),
      requests: st.stats.requests,
      p50: st.stats.latency.p50,
      p99: st.stats.latency.p99,
      errorRate: st.stats.errorRate,
      late: st.stats.arrivals?.lateRatio ?? 0,
      dropped: st.stats.arrivals?.droppedRatio ?? 0,
      pass: failed.length === 0,
      failed,
      limitedBy
    })
    strikes = limitedBy === 'generator' ? strikes + 1 : 0
    if (failed.length > 0 && ends(limitedBy, strikes)) {
      end = steps.at(-1)
      break
    }
  }
  // a step the generator alone failed, followed by one that held, did not end the search
  const last = steps.filter(s => s.pass).at(-1)
  const firstBad = end ?? steps.filter(s => !s.pass && (last === undefined || s.rate > last.rate)).at(0)
  const lastStats = last ? stages.find(s => s.name === last.stage)?.stats : undefined
  return {
    url,
    thresholds: o.thresholds.map(x => x.expr),
    minAchieved: o.minAchieved ?? 0.9,
    steps,
    lastPassingRate: last?.rate ?? null,
    brokeAt: firstBad ? { rate: firstBad.rate, reasons: firstBad.failed, by: firstBad.limitedBy ?? 'target' } : null,
    hitRatio: lastStats?.cache.hitRatio ?? null,
    originShare: lastStats?.originPerRequest ?? null,
    writeShare: lastStats && lastStats.requests > 0 ? Math.round((lastStats.writes / lastStats.requests) * 1e6) / 1e6 : null
  }
}
