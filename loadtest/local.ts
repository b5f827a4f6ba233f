// Every core of this machine: the slice this machine runs is split between
// n worker threads (--workers), each with its own connection loops and
// request generator; what they measure comes back as SecondReports and
// step timings, in the order each thread sent them. Threads are started
// (and their code loaded) before the run's common start is set.
import { hostname } from 'node:os'
import { Worker } from 'node:worker_threads'
import type { Collector } from './collect.js'
import type { SliceAssignment, SliceEvent } from './slice-runner.js'
import { epochNow } from './recorder.js'

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

export interface PoolRun {
  /** resolves when every thread has finished its slice (rejects on the first failure) */
  done: Promise<void>
  /** asks every thread to stop now; `done` resolves once they have flushed */
  stop: () => void
}

export class WorkerPool {
  readonly #workers: Worker[]

  private constructor (workers: Worker[]) {
    this.#workers = workers
  }

  static async start (count: number): Promise<WorkerPool> {
    return new WorkerPool(await Promise.all(Array.from({ length: count }, spawn)))
  }

  get size (): number { return this.#workers.length }

  /** Thread j runs slice j of `size` below `assignment.slices`. Once per pool. */
  run (assignment: SliceAssignment, onEvent: (worker: number, e: SliceEvent) => void): PoolRun {
    const count = this.#workers.length
    const stop = (): void => { for (const w of this.#workers) w.postMessage({ type: 'stop' }) }
    const done = Promise.all(this.#workers.map((w, i) => new Promise<void>((resolve, reject) => {
      w.on('message', (m: SliceEvent | { type: 'done' } | { type: 'error', message: string }) => {
        if (m.type === 'done') resolve()
        else if (m.type === 'error') reject(new Error(m.message))
        else onEvent(i, m)
      })
      w.once('error', reject)
      w.once('exit', (code) => reject(new Error(`generator thread ${i} exited (code ${code}) before finishing`)))
      w.postMessage({ type: 'run', assignment: { ...assignment, slices: [...assignment.slices, { index: i, count }] } })
    }))).then(() => {})
    // a thread that fails stops the others: the run is over
    done.catch(stop)
    return { done, stop }
  }

  async terminate (): Promise<void> {
    await Promise.all(this.#workers.map(w => w.terminate()))
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

/** Head start between the threads being ready and the common start: the assignment has to reach every thread. */
const LEAD_MS = 100

export function localDriver (workers: number): Driver {
  return {
    async run ({ collector, base, signal }) {
      const host = hostname()
      const ids = Array.from({ length: workers }, (_, j) => `local/${j}`)
      ids.forEach((id, j) => collector.addSource(id, { agent: 'local', host, slices: [{ index: j, count: workers }] }))
      const pool = await WorkerPool.start(workers)
      const startAt = epochNow() + LEAD_MS
      const run = pool.run({ ...base, startAt, slices: [] }, (i, e) => {
        if (e.type === 'seconds') for (const r of e.reports) collector.add(ids[i], r)
        else collector.noteStep(e.stage, e.start, e.end)
      })
      const onAbort = (): void => run.stop()
      if (signal.aborted) onAbort()
      signal.addEventListener('abort', onAbort, { once: true })
      try {
        await run.done
      } finally {
        signal.removeEventListener('abort', onAbort)
        await pool.terminate()
      }
      for (const id of ids) collector.markDone(id)
      return { startAt, end: epochNow(), workers: new Map([['local', workers]]) }
    }
  }
}
