// Every core of this machine: the slice this machine runs is split between
// n worker threads (--workers), each with its own autocannon instances and
// request generator; what they measure comes back as SecondReports and
// step timings, in the order each thread sent them.
import { hostname } from 'node:os'
import { Worker } from 'node:worker_threads'
import type { Collector } from './collect.js'
import type { SliceAssignment, SliceEvent } from './slice-runner.js'
import { epochNow } from './recorder.js'

export interface WorkerEvents {
  /** a thread's event; `worker` is its index */
  onEvent: (worker: number, e: SliceEvent) => void
}

export interface StartedWorkers {
  /** resolves when every thread has finished its slice (rejects on the first failure) */
  done: Promise<void>
  /** asks every thread to stop now; `done` resolves once they have flushed */
  stop: () => void
}

const BOOT = new URL('./worker-boot.mjs', import.meta.url)
const ENTRY = new URL('./worker-thread.ts', import.meta.url).href

function spawn (): Promise<Worker> {
  return new Promise((resolve, reject) => {
    const w = new Worker(BOOT, { workerData: { entry: ENTRY } })
    const onMessage = (m: { type: string }): void => {
      if (m.type !== 'ready') return
      w.off('message', onMessage)
      w.off('error', reject)
      resolve(w)
    }
    w.on('message', onMessage)
    w.once('error', reject)
  })
}

/** Starts `count` threads, each slice `index` of `count` below `assignment.slices`; the common start is `startAt` from `prepare`, called once all threads are up. */
export async function startWorkers (count: number, prepare: (readyAt: number) => SliceAssignment, events: WorkerEvents): Promise<StartedWorkers> {
  const workers = await Promise.all(Array.from({ length: count }, spawn))
  const base = prepare(epochNow())
  const done = Promise.all(workers.map((w, i) => new Promise<void>((resolve, reject) => {
    w.on('message', (m: SliceEvent | { type: 'done' } | { type: 'error', message: string }) => {
      if (m.type === 'done') {
        void w.terminate()
        resolve()
      } else if (m.type === 'error') {
        void w.terminate()
        reject(new Error(m.message))
      } else events.onEvent(i, m)
    })
    w.once('error', (err) => reject(err))
    w.once('exit', (code) => reject(new Error(`generator thread ${i} exited (code ${code}) before finishing`)))
    const assignment: SliceAssignment = { ...base, slices: [...base.slices, { index: i, count }] }
    w.postMessage({ type: 'run', assignment })
  }))).then(() => {})
  // a thread that fails stops the others: the run is over
  done.catch(() => { for (const w of workers) w.postMessage({ type: 'stop' }) })
  return {
    done,
    stop: () => { for (const w of workers) w.postMessage({ type: 'stop' }) }
  }
}

export interface DriverContext {
  collector: Collector
  /** the assignment every source gets, before its start time and slices */
  base: Omit<SliceAssignment, 'slices' | 'startAt'>
  signal: AbortSignal
  log: (line: string) => void
}

export interface DriverResult {
  /** the common start, epoch ms on this machine's clock */
  startAt: number
  /** when the last source finished (or was given up), same clock */
  end: number
  /** agent id → its generator threads */
  workers: Map<string, number>
}

/** Where the load comes from: threads of this machine, or agents (coordinator.ts). */
export interface Driver {
  run: (ctx: DriverContext) => Promise<DriverResult>
}

/** Head start between the last thread being ready and the common start: the assignment has to reach every thread. */
const LEAD_MS = 100

export function localDriver (workers: number): Driver {
  return {
    async run ({ collector, base, signal }) {
      const host = hostname()
      const ids = Array.from({ length: workers }, (_, j) => `local/${j}`)
      ids.forEach((id, j) => collector.addSource(id, { agent: 'local', host, slices: [{ index: j, count: workers }] }))
      let startAt = 0
      const started = await startWorkers(workers, (readyAt) => {
        startAt = readyAt + LEAD_MS
        return { ...base, startAt, slices: [] }
      }, {
        onEvent: (i, e) => {
          if (e.type === 'seconds') for (const r of e.reports) collector.add(ids[i], r)
          else collector.noteStep(e.stage, e.start, e.end)
        }
      })
      const onAbort = (): void => started.stop()
      if (signal.aborted) onAbort()
      signal.addEventListener('abort', onAbort, { once: true })
      try {
        await started.done
      } finally {
        signal.removeEventListener('abort', onAbort)
      }
      for (const id of ids) collector.markDone(id)
      return { startAt, end: epochNow(), workers: new Map([['local', workers]]) }
    }
  }
}
