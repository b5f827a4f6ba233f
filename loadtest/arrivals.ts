// The open model's clock: when each request of one slice (a worker thread,
// or a thread of an agent) is meant to leave, whatever the target does.
//
// Arrivals are evenly spaced at the step's rate by default (wrk2's constant
// throughput), or a Poisson process (exponential gaps, seeded) as the
// option. Slices of one step run at their share of its rate; slice i of n
// is shifted by i/n of its own gap, so the slices together interleave into
// one evenly spaced stream rather than n bursts at the same instants. Every
// slice counts from the run's common start, so threads and agents keep to
// one clock as they keep to one plan.
import { createRng, type Rng } from './random.js'
import { sliceStep, type PlannedStage, type Slice } from './stages.js'

export type ArrivalProcess = 'even' | 'poisson'
export const ARRIVAL_PROCESSES: readonly ArrivalProcess[] = ['even', 'poisson']

/** One step of one slice: its share of the rate and of the connection cap. */
export interface ArrivalStep {
  /** seconds from the common start */
  start: number
  duration: number
  /** this slice's requests per second */
  rate: number
  /** the most connections this slice may hold open in this step */
  maxConnections: number
  stage: number
}

/** This slice's steps of an open-model plan (steps where it sends nothing are left out). */
export function arrivalSteps (plan: readonly PlannedStage[], slices: readonly Slice[]): ArrivalStep[] {
  const out: ArrivalStep[] = []
  for (const st of plan) {
    for (const step of st.steps) {
      if (step.rate === null) continue
      const part = sliceStep(step, slices)
      if (part === null || part.rate === null) continue
      out.push({ start: step.start, duration: step.duration, rate: part.rate, maxConnections: part.connections, stage: step.stageIndex })
    }
  }
  return out
}

/** Where this slice sits among all slices, 0 ≤ phase < 1: slice i of n at each level, flattened. */
export function slicePhase (slices: readonly Slice[]): number {
  let index = 0
  let count = 1
  for (const s of slices) {
    index = index * s.count + s.index
    count *= s.count
  }
  return count > 1 ? index / count : 0
}

/**
 * The intended send times of one slice, in order. `at` (seconds from the
 * common start), `stage` and `maxConnections` describe the current arrival;
 * `advance()` moves to the next one and says false when none is left. No
 * allocation per arrival: it runs in the generator's hot loop.
 */
export class ArrivalClock {
  at = 0
  stage = 0
  maxConnections = 1
  readonly #steps: readonly ArrivalStep[]
  readonly #phase: number
  readonly #rng: Rng | null
  #i = -1
  /** arrivals so far in the current step (even), or seconds into it (Poisson) */
  #k = 0
  #done = false

  constructor (steps: readonly ArrivalStep[], o: { process?: ArrivalProcess, phase?: number, seed?: number } = {}) {
    this.#steps = steps
    this.#phase = o.phase ?? 0
    this.#rng = o.process === 'poisson' ? createRng((o.seed ?? 1) ^ 0x5bd1e995) : null
    this.#done = !this.#nextStep()
  }

  get done (): boolean { return this.#done }

  advance (): boolean {
    if (this.#done) return false
    if (this.#step()) return true
    this.#done = !this.#nextStep()
    return !this.#done
  }

  /** The next arrival within the current step, if it has one. */
  #step (): boolean {
    const s = this.#steps[this.#i]
    let offset: number
    if (this.#rng === null) {
      offset = (this.#k + this.#phase) / s.rate
      this.#k++
    } else {
      this.#k += -Math.log(1 - this.#rng()) / s.rate
      offset = this.#k
    }
    if (offset >= s.duration) return false
    this.at = s.start + offset
    return true
  }

  #nextStep (): boolean {
    while (++this.#i < this.#steps.length) {
      const s = this.#steps[this.#i]
      this.#k = 0
      this.stage = s.stage
      this.maxConnections = Math.max(1, s.maxConnections)
      if (this.#step()) return true
    }
    return false
  }
}
