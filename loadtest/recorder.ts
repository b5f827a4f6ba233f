// The generator's side of the accounting: every response (and every
// transport error) is counted, none sampled, into one cell per second, stage
// and endpoint. A cell costs a counter bump and one HDR record per response;
// once a second is over its cells leave as a SecondReport that the collector
// (same process, another thread or another machine) adds up. Seconds are
// counted from the run's common start, so reports from every worker and
// every agent line up.
import { Group, type GroupData, type RequestMeta } from './group.js'
import type { CacheState } from './cache-headers.js'

export interface CellReport {
  /** stage index in the plan */
  stage: number
  endpoint: string
  data: GroupData
}

/** Everything one source measured in second `t` of the run (complete: no later report adds to it). */
export interface SecondReport {
  t: number
  cells: CellReport[]
  /** the source's last second, cut short when it stopped: the collector does not take it as a full second */
  partial?: boolean
}

interface Second {
  t: number
  /** stage index → request meta (one object per endpoint) → cell */
  stages: Map<number, Map<RequestMeta, Group>>
}

export class Recorder {
  readonly #startAt: number
  readonly #now: () => number
  #stage = 0
  #expectedIntervalUs = 0
  #cur: Second | null = null
  readonly #done: Second[] = []
  /** seconds below this were reported */
  #reported = 0
  #lastT = -1
  #lastMeta: RequestMeta | null = null
  #lastStage = -1
  #lastCell: Group | null = null

  /** `startAt` and `now()` in epoch milliseconds on one clock. */
  constructor (startAt: number, now: () => number = epochNow) {
    this.#startAt = startAt
    this.#now = now
  }

  /** What runs now: its samples go to this stage, and open-model latencies are corrected for this gap between sends. */
  setStep (stageIndex: number, expectedIntervalUs: number): void {
    this.#stage = stageIndex
    this.#expectedIntervalUs = expectedIntervalUs
  }

  #cell (meta: RequestMeta): Group {
    const t = Math.max(0, Math.floor((this.#now() - this.#startAt) / 1000))
    // most responses land in the cell of the one before (same second, stage and page)
    if (t === this.#lastT && meta === this.#lastMeta && this.#stage === this.#lastStage && this.#lastCell !== null) return this.#lastCell
    let s = this.#cur
    if (s === null || s.t !== t) {
      if (s !== null) this.#done.push(s)
      s = this.#cur = { t, stages: new Map() }
    }
    let byMeta = s.stages.get(this.#stage)
    if (byMeta === undefined) s.stages.set(this.#stage, (byMeta = new Map()))
    let g = byMeta.get(meta)
    if (g === undefined) byMeta.set(meta, (g = new Group('cell')))
    this.#lastT = t
    this.#lastMeta = meta
    this.#lastStage = this.#stage
    this.#lastCell = g
    return g
  }

  response (meta: RequestMeta, status: number, bytes: number, latencyMs: number, cache: CacheState | null, collapsed: boolean): void {
    this.#cell(meta).record(meta, status, bytes, latencyMs * 1000, cache, collapsed, this.#expectedIntervalUs)
  }

  transportError (meta: RequestMeta, timeout: boolean): void {
    this.#cell(meta).recordTransportError(timeout)
  }

  /**
   * Reports for every second before `upTo` not reported yet, one per second
   * even when nothing happened in it (the collector waits for each source's
   * report of a second before it shows that second). Default: the seconds
   * that are over.
   */
  flush (upTo: number = Math.floor((this.#now() - this.#startAt) / 1000), final = false): SecondReport[] {
    if (this.#cur !== null && this.#cur.t < upTo) {
      this.#done.push(this.#cur)
      this.#cur = null
      this.#lastCell = null
    }
    const byT = new Map<number, Second>()
    for (const s of this.#done.splice(0)) byT.set(s.t, s)
    const out: SecondReport[] = []
    for (let t = this.#reported; t < upTo; t++) {
      const s = byT.get(t)
      const cells: CellReport[] = []
      if (s) {
        for (const [stage, byMeta] of s.stages) {
          for (const [meta, g] of byMeta) if (!g.empty) cells.push({ stage, endpoint: meta.endpoint, data: g.toData() })
        }
      }
      out.push({ t, cells })
    }
    this.#reported = Math.max(this.#reported, upTo)
    const last = out.at(-1)
    if (final && last) last.partial = true
    return out
  }
}

/** Epoch milliseconds from the monotonic clock (no jumps when NTP adjusts the wall clock). */
export function epochNow (): number {
  return performance.timeOrigin + performance.now()
}
