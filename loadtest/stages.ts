// Stage schedule: turns a scenario's stages into steps and runs them.
//
// autocannon cannot change the number of connections (or the rate) of a
// running instance, so a ramping stage is cut into steps of about --step
// seconds, each run by its own autocannon instance at the interpolated
// target; a flat stage is one step. The collector's clock runs across steps,
// which stitches the instances into one timeline.
//
// Closed model (default): the target is a number of connections, each
//   sending its next request as soon as the previous answer arrives.
// Open model (--rate): the target is an arrival rate (requests/s) through
//   autocannon's `overallRate`, spread over a fixed pool of connections.
//   autocannon caps a rate per connection rather than issuing requests on a
//   clock, so if the tier slows down the achieved rate falls below the target
//   (the report shows both) and latencies are corrected for coordinated
//   omission (collect.ts).
import autocannon from 'autocannon'
import type { AmountSpec, StageSpec } from './scenarios.js'
import type { Collector, StepTarget } from './collect.js'

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
    // autocannon's rate limit counts requests per whole second of each
    // connection: a shorter open-model step would get a full second's quota
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
        // autocannon itself lowers connections to the rate when the rate is smaller
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

export interface RunScheduleOptions {
  url: string
  requests: autocannon.Request[]
  collector: Collector
  /** seconds before a request counts as timed out */
  timeout?: number
  signal?: AbortSignal
  onStep?: (step: PlannedStep) => void
}

/** Runs one autocannon instance per step, in order. Resolves when done or aborted. */
export async function runSchedule (plan: readonly PlannedStage[], o: RunScheduleOptions): Promise<void> {
  for (const stage of plan) {
    for (const step of stage.steps) {
      if (o.signal?.aborted) return
      o.collector.beginStep(step)
      o.onStep?.(step)
      await runStep(step, o)
    }
  }
}

/**
 * autocannon's rate limit is a quota per connection per whole second, so a
 * run of 1.4 s at 100 req/s could send 200 requests. In the open model a
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

async function runStep (step: PlannedStep, o: RunScheduleOptions): Promise<void> {
  if (step.rate === null) return runInstance(step.duration, step.connections, null, o)
  for (const c of rateChunks(step.duration, step.rate)) {
    if (o.signal?.aborted) return
    await runInstance(c.duration, Math.min(step.connections, c.rate), c.rate, o)
  }
}

function runInstance (duration: number, connections: number, rate: number | null, o: RunScheduleOptions): Promise<void> {
  return new Promise((resolve, reject) => {
    const opts: autocannon.Options = {
      url: o.url,
      connections,
      duration,
      timeout: o.timeout ?? 10,
      pipelining: 1,
      // autocannon notices the end of its duration only when it samples:
      // sample often so steps end on time (the default is once a second)
      sampleInt: 50,
      requests: o.requests
    }
    if (rate !== null) opts.overallRate = rate
    let instance: autocannon.Instance
    const onAbort = (): void => { instance?.stop() }
    instance = autocannon(opts, (err) => {
      o.signal?.removeEventListener('abort', onAbort)
      if (err) reject(err)
      else resolve()
    })
    instance.on('response', (_client, statusCode, resBytes, responseTime) => {
      o.collector.onResponse(statusCode, resBytes, responseTime)
    })
    instance.on('reqError', (err: Error) => { o.collector.onTransportError(err) })
    o.signal?.addEventListener('abort', onAbort, { once: true })
  })
}
