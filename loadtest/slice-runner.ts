// One slice of a run, in this thread: its own seeded request generator, a
// recorder, and the slice of the schedule. Once a second (on the common
// timeline) it hands over the seconds that are over. Used by every worker
// thread (worker-thread.ts), whether the run is local or an agent's share.
import { Recorder, epochNow, type SecondReport } from './recorder.js'
import { RequestGenerator, type Target } from './requests.js'
import type { Scenario } from './scenarios.js'
import { runSlice, splitAmount, type PlannedStage, type Slice } from './stages.js'
import type { ArrivalProcess } from './arrivals.js'

export interface SliceAssignment {
  url: string
  scenario: Scenario
  /** page paths, most popular first (the coordinator's reading of the sitemap) */
  pages: string[]
  plan: PlannedStage[]
  slices: Slice[]
  /** the run's common start, epoch ms on this machine's clock */
  startAt: number
  seed: number
  runId: string
  /** per-request timeout, seconds */
  timeout: number
  target: Target
  /** closed model: requests over every source together (autocannon's --amount), split like the connections */
  amount?: number
  /** open model: how arrivals are spaced (default even) */
  arrivals?: ArrivalProcess
}

export type SliceEvent =
  | { type: 'seconds', reports: SecondReport[] }
  | { type: 'step', stage: number, start: number, end: number }

/** Slice 0 of every level keeps the run's seed (one worker replays the sequence of an earlier single-process run); others get their own. */
export function sliceSeed (seed: number, slices: readonly Slice[]): number {
  if (slices.every(s => s.index === 0)) return seed
  let h = seed >>> 0
  for (const s of slices) h = Math.imul(h ^ (s.index + 0x9e3779b9), 0x85ebca6b) >>> 0
  return h
}

export function sliceRunId (runId: string, slices: readonly Slice[]): string {
  return slices.length === 0 ? runId : `${runId}-${slices.map(s => s.index).join('.')}`
}

export async function runSliceHere (a: SliceAssignment, emit: (e: SliceEvent) => void, signal?: AbortSignal): Promise<void> {
  const seed = sliceSeed(a.seed, a.slices)
  const generator = new RequestGenerator({
    scenario: a.scenario,
    pages: a.pages,
    base: a.url,
    seed,
    runId: sliceRunId(a.runId, a.slices),
    target: a.target
  })
  const recorder = new Recorder(a.startAt)
  const flush = (upTo?: number, final = false): void => {
    const reports = recorder.flush(upTo, final)
    if (reports.length > 0) emit({ type: 'seconds', reports })
  }
  // just after each second of the common timeline ends
  let timer: NodeJS.Timeout | undefined
  const tick = (): void => {
    flush()
    const next = 1000 - ((epochNow() - a.startAt) % 1000) + 5
    timer = setTimeout(tick, next > 0 ? next : 1000)
  }
  timer = setTimeout(tick, Math.max(0, a.startAt - epochNow()) + 1005)
  try {
    await runSlice({
      url: a.url,
      plan: a.plan,
      slices: a.slices,
      startAt: a.startAt,
      timeout: a.timeout,
      source: generator,
      recorder,
      signal,
      amount: a.amount === undefined ? undefined : splitAmount(a.amount, a.slices),
      arrivals: a.arrivals,
      seed,
      onStep: (step, start, end) => emit({ type: 'step', stage: step.stageIndex, start: Math.max(0, start), end })
    })
  } finally {
    clearTimeout(timer)
    // the last, partial second too
    flush(Math.max(0, Math.floor((epochNow() - a.startAt) / 1000)) + 1, true)
  }
}
