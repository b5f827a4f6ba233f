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
  /** seconds not reported yet (the current one, and the next when an arrival is due in it) */
  readonly #open = new Map<number, Second>()
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

  /**
   * Closed model: what runs now; samples recorded without a stage go to it.
   * (The open model names each sample's stage: an answer belongs to the
   * step its request was meant for, even when it arrives in the next.)
   */
  setStep (stageIndex: number): void {
    this.#stage = stageIndex
  }

  #cell (meta: RequestMeta, stage: number, at = this.#now()): Group {
    if (stage < 0) stage = this.#stage
    // a second already reported takes nothing more: it goes to the current one
    const t = Math.max(this.#reported, Math.floor((at - this.#startAt) / 1000))
    // most responses land in the cell of the one before (same second, stage and page)
    if (t === this.#lastT && meta === this.#lastMeta && stage === this.#lastStage && this.#lastCell !== null) return this.#lastCell
    let s = this.#open.get(t)
    if (s === undefined) this.#open.set(t, (s = { t, stages: new Map() }))
    let byMeta = s.stages.get(stage)
    if (byMeta === undefined) s.stages.set(stage, (byMeta = new Map()))
    let g = byMeta.get(meta)
    if (g === undefined) byMeta.set(meta, (g = new Group('cell')))
    this.#lastT = t
    this.#lastMeta = meta
    this.#lastStage = stage
    this.#lastCell = g
    return g
  }

  /** An answer; `stage` -1 is the current step's (closed model). */
  response (meta: RequestMeta, status: number, bytes: number, latencyMs: number, cache: CacheState | null, collapsed: boolean, stage = -1): void {
    this.#cell(meta, stage).record(meta, status, bytes, latencyMs * 1000, cache, collapsed)
  }

  transportError (meta: RequestMeta, timeout: boolean, stage = -1): void {
    this.#cell(meta, stage).recordTransportError(timeout)
  }

  /** Open model: an arrival came due at `at` (epoch ms; counted in that second, even when this thread sees it late). */
  arrival (meta: RequestMeta, stage: number, at: number): void {
    this.#cell(meta, stage, at).arrivals.intended++
  }

  /** Open model: an arrival left; `late` past LATE_MS, `lagged` when late with a connection free (this thread's own delay). */
  sent (meta: RequestMeta, stage: number, late: boolean, lagged: boolean): void {
    const a = this.#cell(meta, stage).arrivals
    a.sent++
    if (late) a.late++
    if (lagged) a.lagged++
  }

  /** Open model: an arrival waited longer than the timeout for a connection and was never sent. */
  dropped (meta: RequestMeta, stage: number): void {
    this.#cell(meta, stage).arrivals.dropped++
  }

  /**
   * Reports for every second before `upTo` not reported yet, one per second
   * even when nothing happened in it (the collector waits for each source's
   * report of a second before it shows that second). Default: the seconds
   * that are over.
   */
  flush (upTo: number = Math.floor((this.#now() - this.#startAt) / 1000), final = false): SecondReport[] {
    if (this.#lastT < upTo) this.#lastCell = null
    const out: SecondReport[] = []
    for (let t = this.#reported; t < upTo; t++) {
      const s = this.#open.get(t)
      this.#open.delete(t)
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
