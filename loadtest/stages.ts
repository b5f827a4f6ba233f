// Stage schedule: turns a scenario's stages into steps, splits each step
// between the sources that generate it (worker threads, agents), and runs
// one source's slice on the common timeline.
//
// A ramping stage is cut into steps of about --step seconds at the
// interpolated target; a flat stage is one step. Every source keeps to the
// planned times from the common start, so many workers and machines stay on
// one timeline.
//
// Closed model (default): the target is a number of connections, each
//   sending its next request as soon as the previous answer arrives; each
//   step is run by its own instance of the connection loop (http-client.ts).
// Open model (--rate): the target is an arrival rate (requests/s). Requests
//   leave on a clock (arrivals.ts), whatever the target does, on as many
//   connections as they need up to the step's cap (--max-connections), and
//   each is timed from when it was meant to leave (wrk2's correction, done
//   per request rather than guessed); what could not leave on time is
//   counted late or dropped. One instance runs the whole plan.
//
// Targets are totals over every source: a step's connections and rate are
// split so that the slices add up to the plan exactly (autocannon's
// `workers` option, by contrast, divides connections but hands every worker
// the whole `overallRate`, which multiplies the rate by the number of workers).
import type { AmountSpec, StageSpec } from './scenarios.js'
import { ArrivalClock, arrivalSteps, slicePhase, type ArrivalProcess } from './arrivals.js'
import { runConnections, type ConnectionsOptions, type RequestSource } from './http-client.js'
import { epochNow, type Recorder } from './recorder.js'

export type LoadModel = 'closed' | 'open'

export interface PlanOptions {
  /** whole run, seconds */
  duration: number
  model: LoadModel
  /** 100 %: connections (closed) or requests/s (open) */
  target: number
  /** open model: the most connections carrying the rate (--max-connections) */
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
    const n = from === to ? 1 : Math.min(MAX_STEPS_PER_STAGE, Math.max(1, Math.round(duration / o.step)))
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
        // open model: the cap, opened only as the arrivals need them
        connections: o.model === 'closed' ? amount : o.pool,
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
  // open model: the connections are a cap, opened as the arrivals need them
  return { connections: Math.max(1, splitAmount(step.connections, slices, turn)), rate }
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
  /** open model: how arrivals are spaced (default even) */
  arrivals?: ArrivalProcess
  /** open model: seeds Poisson arrivals */
  seed?: number
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
  if (o.plan.some(st => st.steps.some(s => s.rate !== null))) return runOpenSlice(o)
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
      o.recorder.setStep(step.stageIndex)
      if (part === null) await sleep(remaining * 1000, o.signal)
      else if (o.amount !== undefined) await runAmount(remaining, part.connections, o.amount, o)
      else await connectionsOf(o, part.connections, remaining)
      o.onStep?.(step, (begun - o.startAt) / 1000, (now() - o.startAt) / 1000)
    }
  }
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
  if (rem > 0) runs.push(connectionsOf(o, rem, duration, { maxConnectionRequests: q + 1 }))
  runs.push(connectionsOf(o, c - rem, duration, { maxConnectionRequests: q }))
  return Promise.all(runs).then(() => {})
}

/** One instance of the connection loop for this slice: its target, requests, recorder and stop. */
function connectionsOf (o: RunSliceOptions, connections: number, duration: number, extra: Pick<ConnectionsOptions, 'maxConnectionRequests' | 'arrivals'> = {}): Promise<void> {
  return runConnections({ url: o.url, connections, duration, timeout: o.timeout ?? 10, source: o.source, recorder: o.recorder, signal: o.signal, ...extra })
}

/**
 * The open model: one instance for the whole plan, its arrivals on the
 * common clock (arrivals.ts), so connections carry over from step to step
 * and an answer late enough to land in the next step still counts for its
 * own. Each step is reported at its planned end.
 */
async function runOpenSlice (o: RunSliceOptions): Promise<void> {
  const now = o.now ?? epochNow
  const steps = arrivalSteps(o.plan, o.slices)
  const clock = new ArrivalClock(steps, { process: o.arrivals, phase: slicePhase(o.slices), seed: o.seed })
  const timeout = o.timeout ?? 10
  const end = o.plan.reduce((e, st) => Math.max(e, st.start + st.duration), 0)
  // the first step's connections are opened before its first arrival
  const first = steps[0]?.maxConnections ?? 1
  const warm = Math.min(first, Math.max(1, Math.ceil((steps[0]?.rate ?? 1) / 100)))
  const timing = (async () => {
    for (const stage of o.plan) {
      for (const step of stage.steps) {
        await sleep(o.startAt + (step.start + step.duration) * 1000 - now(), o.signal)
        if (o.signal?.aborted) return
        o.onStep?.(step, step.start, (now() - o.startAt) / 1000)
      }
    }
  })()
  await sleep(o.startAt - 50 - now(), o.signal)
  // the last arrivals get their timeout to be answered, and no more
  await connectionsOf(o, warm, Math.max(0, (o.startAt - now()) / 1000) + end + timeout + 1, { arrivals: { clock, startAt: o.startAt } })
  await timing
}
