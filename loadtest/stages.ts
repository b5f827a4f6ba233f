// Stage schedule: turns a scenario's stages into steps, splits each step
// between the sources that generate it (worker threads, agents), and runs
// one source's slice on the common timeline.
//
// An instance of the connection loop (http-client.ts) runs at one number of
// connections and one rate, so a ramping stage is cut into steps of about
// --step seconds, each run by its own instance at the interpolated target;
// a flat stage is one step. Every source starts each step at its
// planned time from the common start (and stops it at its planned end), so
// many workers and machines stay on one timeline.
//
// Closed model (default): the target is a number of connections, each
//   sending its next request as soon as the previous answer arrives.
// Open model (--rate): the target is an arrival rate (requests/s), spread
//   over a fixed pool of connections as a quota per connection per second
//   (as autocannon's `connectionRate` does) rather than issued on a clock,
//   so if the tier slows down the achieved rate falls below the target (the
//   report shows both) and latencies are corrected for coordinated omission
//   (group.ts).
//
// Targets are totals over every source: a step's connections and rate are
// split so that the slices add up to the plan exactly (autocannon's
// `workers` option, by contrast, divides connections but hands every worker
// the whole `overallRate`, which multiplies the rate by the number of workers).
import type { AmountSpec, StageSpec } from './scenarios.js'
import { runConnections, type RequestSource } from './http-client.js'
import { epochNow, type Recorder } from './recorder.js'

export type LoadModel = 'closed' | 'open'

export interface PlanOptions {
  /** whole run, seconds */
  duration: number
  model: LoadModel
  /** 100 %: connections (closed) or requests/s (open) */
  target: number
  /** open model: connections available to carry the rate */
  pool: number
  /** seconds per step in a ramping stage */
  step: number
}

/** What the load runs at, for one step of a stage. */
export interface StepTarget {
  stage: string
  stageIndex: number
  connections: number
  /** requests per second in the open model, null in the closed model */
  rate: number | null
}

export interface PlannedStep extends StepTarget {
  index: number
  /** planned offset from the run's start, seconds */
  start: number
  duration: number
}

export interface PlannedStage {
  name: string
  index: number
  start: number
  duration: number
  from: number
  to: number
  steps: PlannedStep[]
}

export const MAX_STEPS_PER_STAGE = 120

/** "25%" of whole, or an absolute number. */
export function resolveAmount (a: AmountSpec, whole: number): number {
  if (typeof a === 'number') return a
  return (Number(a.slice(0, -1)) / 100) * whole
}

export function planSchedule (specs: readonly StageSpec[], o: PlanOptions): PlannedStage[] {
  if (!(o.duration > 0)) throw new RangeError('duration must be > 0')
  if (!(o.target >= 1)) throw new RangeError('target must be >= 1')
  if (!(o.step > 0)) throw new RangeError('step must be > 0')
  const stages: PlannedStage[] = []
  let t = 0
  let stepIndex = 0
  specs.forEach((spec, index) => {
    const duration = resolveAmount(spec.duration, o.duration)
    const to = resolveAmount(spec.to, o.target)
    const from = spec.from === undefined ? to : resolveAmount(spec.from, o.target)
    if (!(duration > 0)) throw new RangeError(`stage ${spec.name}: duration must be > 0`)
    let n = from === to ? 1 : Math.min(MAX_STEPS_PER_STAGE, Math.max(1, Math.round(duration / o.step)))
    // the rate is a quota per whole second of each connection: a shorter
    // open-model step would get a full second's quota
    if (o.model === 'open') n = Math.max(1, Math.min(n, Math.floor(duration)))
    const stepDuration = duration / n
    const steps: PlannedStep[] = []
    for (let i = 0; i < n; i++) {
      const value = n === 1 ? to : from + ((to - from) * i) / (n - 1)
      const amount = Math.max(1, Math.round(value))
      steps.push({
        stage: spec.name,
        stageIndex: index,
        index: stepIndex++,
        start: round3(t + i * stepDuration),
        duration: round3(stepDuration),
        // no more connections than requests per second: each carries at least one
        connections: o.model === 'closed' ? amount : Math.min(o.pool, amount),
        rate: o.model === 'open' ? amount : null
      })
    }
    stages.push({ name: spec.name, index, start: round3(t), duration: round3(duration), from: round3(from), to: round3(to), steps })
    t += duration
  })
  return stages
}

function round3 (x: number): number {
  return Math.round(x * 1000) / 1000
}

/** This source is slice `index` of `count` at each level (agents, then worker threads). */
export interface Slice { index: number, count: number }

/**
 * `x` split into `count` near-equal integers, slice by slice: the slices of
 * one level add up to x exactly and differ by one at most. The remainder
 * goes to the slices from `turn` on (the step's index): if it always went to
 * slice 0, over a ramp of many steps the first agent would send noticeably
 * more than the last (a third more, with 3 agents and a few connections).
 */
export function splitAmount (x: number, slices: readonly Slice[], turn = 0): number {
  let v = x
  for (const s of slices) {
    const rem = v % s.count
    const i = (s.index - (turn % s.count) + s.count) % s.count
    v = Math.floor(v / s.count) + (i < rem ? 1 : 0)
  }
  return v
}

/** A slice's part of one step: null when the slice has nothing to send in it. */
export function sliceStep (step: Pick<PlannedStep, 'connections' | 'rate'> & { index?: number }, slices: readonly Slice[]): { connections: number, rate: number | null } | null {
  const turn = step.index ?? 0
  if (step.rate === null) {
    const c = splitAmount(step.connections, slices, turn)
    return c > 0 ? { connections: c, rate: null } : null
  }
  const rate = splitAmount(step.rate, slices, turn)
  if (rate === 0) return null
  return { connections: Math.max(1, Math.min(rate, splitAmount(step.connections, slices, turn))), rate }
}

/** The slice's share of the planned load (connection-seconds or requests), 0..1. */
export function shareOf (plan: readonly PlannedStage[], slices: readonly Slice[], from = 0): number {
  let all = 0
  let mine = 0
  for (const st of plan) {
    for (const step of st.steps) {
      const amount = step.rate ?? step.connections
      all += amount * step.duration
      const end = step.start + step.duration
      if (end <= from) continue
      const part = sliceStep(step, slices)
      const mineAmount = part === null ? 0 : part.rate ?? part.connections
      mine += mineAmount * (end - Math.max(from, step.start))
    }
  }
  return all > 0 ? mine / all : 0
}

/** Open model: requests the slice was planned to send from second `from` on. */
export function plannedRequests (plan: readonly PlannedStage[], slices: readonly Slice[], from = 0): number {
  let n = 0
  for (const st of plan) {
    for (const step of st.steps) {
      const end = step.start + step.duration
      if (end <= from || step.rate === null) continue
      const part = sliceStep(step, slices)
      if (part?.rate) n += part.rate * (end - Math.max(from, step.start))
    }
  }
  return Math.round(n)
}

export interface RunSliceOptions {
  url: string
  plan: readonly PlannedStage[]
  slices: readonly Slice[]
  /** the run's common start, epoch ms on this machine's clock */
  startAt: number
  /** seconds before a request counts as timed out */
  timeout?: number
  source: RequestSource
  recorder: Recorder
  signal?: AbortSignal
  /** a step ran from `start` to `end`, seconds since the common start */
  onStep?: (step: PlannedStep, start: number, end: number) => void
  now?: () => number
  /**
   * Closed model: requests this slice sends in all (autocannon's --amount),
   * split between the connections of each step; a step whose connections
   * all sent their part ends when the last answer arrives.
   */
  amount?: number
}

function sleep (ms: number, signal?: AbortSignal): Promise<void> {
  if (ms <= 0 || signal?.aborted) return Promise.resolve()
  return new Promise(resolve => {
    const done = (): void => { clearTimeout(timer); signal?.removeEventListener('abort', done); resolve() }
    const timer = setTimeout(done, ms)
    signal?.addEventListener('abort', done, { once: true })
  })
}

/** Runs one slice of the plan on the common timeline. Resolves when done or aborted. */
export async function runSlice (o: RunSliceOptions): Promise<void> {
  const now = o.now ?? epochNow
  const at = (t: number): number => o.startAt + t * 1000
  for (const stage of o.plan) {
    for (const step of stage.steps) {
      if (o.signal?.aborted) return
      await sleep(at(step.start) - now(), o.signal)
      if (o.signal?.aborted) return
      const begun = now()
      // a step that started late (the previous instance overran) ends on time anyway
      const remaining = (at(step.start + step.duration) - begun) / 1000
      if (remaining < 0.02) continue
      const part = sliceStep(step, o.slices)
      o.recorder.setStep(step.stageIndex, part?.rate ? (1e6 * part.connections) / part.rate : 0)
      if (part === null) await sleep(remaining * 1000, o.signal)
      else if (step.rate === null) await (o.amount === undefined ? runInstance(remaining, part.connections, o) : runAmount(remaining, part.connections, o.amount, o))
      else {
        // the arrivals of the planned step, even when it began a little late:
        // chunks keep to the planned clock
        let chunkStart = at(step.start)
        for (const c of rateChunks(step.duration, step.rate)) {
          if (o.signal?.aborted) break
          const rate = splitAmount(c.rate, o.slices, step.index)
          if (rate > 0) await runRate(c.duration, Math.min(part.connections, rate), rate, o)
          // the instance is done once its last quota is answered: the next chunk keeps to the clock
          chunkStart += c.duration * 1000
          await sleep(chunkStart - now(), o.signal)
        }
      }
      o.onStep?.(step, (begun - o.startAt) / 1000, (now() - o.startAt) / 1000)
    }
  }
}

/**
 * The rate is a quota per connection per whole second, so a run of 1.4 s at
 * 100 req/s could send 200 requests. In the open model a
 * step is therefore run as whole seconds at the rate, then the remainder at
 * the rate scaled to its length: the arrivals stay at rate × duration.
 */
export function rateChunks (duration: number, rate: number): Array<{ duration: number, rate: number }> {
  const whole = Math.floor(duration + 1e-9)
  const rest = Math.round((duration - whole) * 1000) / 1000
  const chunks: Array<{ duration: number, rate: number }> = []
  if (whole >= 1) chunks.push({ duration: whole, rate })
  if (rest >= 0.01) chunks.push({ duration: rest, rate: Math.max(1, Math.round(rate * rest)) })
  return chunks
}

/**
 * `rate` requests per second over `connections`, for `duration` seconds
 * (whole seconds, or one sub-second remainder carrying its share of a
 * second's quota). Each connection gets a quota per second from the
 * instance's start, and would get one more if it were still running when the
 * last second ticks over. So: two instances side by side,
 * `rate % connections` connections at q+1 req/s and the rest at q, each
 * connection capped at its own quota × seconds. The arrivals are then
 * exactly rate × seconds, and the step's remainder is waited out by the
 * caller (the last quota goes out at the start of its second).
 */
function runRate (duration: number, connections: number, rate: number, o: RunSliceOptions): Promise<void> {
  const seconds = Math.max(1, Math.floor(duration + 1e-9))
  // Every connection stops by itself after its last quota is answered: the
  // instance's own end only matters when answers are late, and then it must
  // not cut the last second's answers short (nor reach a quota more)
  if (duration >= 1) duration = seconds + 0.9
  const q = Math.floor(rate / connections)
  const rem = rate % connections
  const runs: Array<Promise<void>> = []
  if (rem > 0) runs.push(runInstance(duration, rem, o, { connectionRate: q + 1, maxConnectionRequests: (q + 1) * seconds }))
  if (q > 0) runs.push(runInstance(duration, connections - rem, o, { connectionRate: q, maxConnectionRequests: q * seconds }))
  return Promise.all(runs).then(() => {})
}

/**
 * `amount` requests over `connections`, split as autocannon splits --amount:
 * each connection sends its part (the first `amount % connections` one more)
 * and stops once answered.
 */
function runAmount (duration: number, connections: number, amount: number, o: RunSliceOptions): Promise<void> {
  const c = Math.min(connections, amount)
  if (c === 0) return Promise.resolve()
  const q = Math.floor(amount / c)
  const rem = amount % c
  const runs: Array<Promise<void>> = []
  if (rem > 0) runs.push(runInstance(duration, rem, o, { connectionRate: 0, maxConnectionRequests: q + 1 }))
  runs.push(runInstance(duration, c - rem, o, { connectionRate: 0, maxConnectionRequests: q }))
  return Promise.all(runs).then(() => {})
}

function runInstance (duration: number, connections: number, o: RunSliceOptions, limits?: { connectionRate: number, maxConnectionRequests: number }): Promise<void> {
  return runConnections({
    url: o.url,
    connections,
    duration,
    timeout: o.timeout ?? 10,
    source: o.source,
    recorder: o.recorder,
    signal: o.signal,
    ...limits
  })
}
