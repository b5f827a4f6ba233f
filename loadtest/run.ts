// One load-test run, start to finish: sitemap → plan → generators (worker
// threads here, or agents elsewhere) → merged stream (progress, abort
// thresholds) → summary (thresholds, capacity) → reports. cli.ts parses
// flags and maps the outcome to an exit code; tests call runLoadTest directly.
import { mkdir } from 'node:fs/promises'
import { Collector, type TimelineEntry } from './collect.js'
import { planCapacity, type CapacityOptions } from './capacity.js'
import { localDriver, type Driver } from './local.js'
import { progressLine } from './progress.js'
import { attachResults, buildSummary, writeSummaryJson, type Summary } from './report-json.js'
import { writeHtmlReport } from './report-html.js'
import { RequestGenerator, type Target } from './requests.js'
import { writeShare, type Scenario } from './scenarios.js'
import { loadSitemap, rankPages } from './sitemap.js'
import { planSchedule, type LoadModel, type PlannedStage } from './stages.js'
import { evaluateThresholds, type Threshold, type ThresholdResult } from './thresholds.js'
import type { ArrivalProcess } from './arrivals.js'

export type PlanUsersOptions = Omit<CapacityOptions, 'scenarioWriteShare'>

export interface RunOptions {
  scenario: Scenario
  url: string
  /** seconds */
  duration: number
  model: LoadModel
  /** 100 % of the stage targets: connections (closed) or req/s (open), over every generator together */
  target: number
  /** open model: the most connections carrying the rate (--max-connections), opened as needed */
  pool: number
  /** open model: evenly spaced arrivals (default) or a Poisson process */
  arrivals?: ArrivalProcess
  step: number
  seed: number
  /** per-request timeout, seconds */
  timeout: number
  /** closed model: stop once this many requests are answered (autocannon's --amount); `duration` is then the longest it may take */
  amount?: number
  thresholds: Threshold[]
  /** checked once per second over the merged stream so far; the first to fail stops every generator (and fails the run) */
  abortOn?: Threshold[]
  /** generator threads on this machine (default 1); ignored with `driver` */
  workers?: number
  /** where the load comes from (default: `workers` threads here) */
  driver?: Driver
  /** 'backend': the write API straight at a backend (requests.ts) */
  api?: Target
  /** a ready-made schedule instead of the scenario's stages (the knee search's staircase) */
  plan?: PlannedStage[]
  /** the pages to request instead of reading the sitemap at `url` (a backend has none) */
  pages?: string[]
  /** called on each sealed second after the abort thresholds; a non-null answer stops the run */
  liveCheck?: (c: Collector, e: TimelineEntry) => { expr: string, actual: number | null } | null
  out?: string
  planUsers?: PlanUsersOptions
  /** where the per-second progress goes; null for none */
  progress?: NodeJS.WritableStream | null
  signal?: AbortSignal
  log?: (line: string) => void
}

export interface RunOutcome {
  summary: Summary
  plan: PlannedStage[]
  files: string[]
  collector: Collector
  /** the pages requested, most popular first */
  pages: string[]
}

export async function runLoadTest (o: RunOptions): Promise<RunOutcome> {
  const log = o.log ?? (() => {})
  const plan = o.plan ?? planSchedule(o.scenario.stages, { duration: o.duration, model: o.model, target: o.target, pool: o.pool, step: o.step })
  const pages = o.pages ?? rankPages(await loadSitemap(o.url))
  const target = o.api ?? 'site'
  const runId = (o.seed >>> 0).toString(36) + '-' + Date.now().toString(36)
  // fails here, with its reason, rather than in every generator thread
  void new RequestGenerator({ scenario: o.scenario, pages, base: o.url, seed: o.seed, runId, target })
  const driver = o.driver ?? localDriver(Math.max(1, o.workers ?? 1))
  const steps = plan.reduce((n, s) => n + s.steps.length, 0)
  const duration = plan.reduce((end, s) => Math.max(end, s.start + s.duration), 0)
  log(`${o.scenario.name}: ${pages.length} pages from the sitemap; ${plan.length} stage(s) in ${steps} step(s), ${duration} s, ${o.model} model (${o.model === 'open' ? `up to ${Math.max(...plan.flatMap(s => s.steps.map(x => x.rate ?? 0)))} req/s, ${o.arrivals ?? 'even'} arrivals, at most ${o.pool} connections` : `up to ${Math.max(...plan.flatMap(s => s.steps.map(x => x.connections)))} connections`})`)

  const ac = new AbortController()
  const onOuterAbort = (): void => ac.abort()
  if (o.signal?.aborted) ac.abort()
  o.signal?.addEventListener('abort', onOuterAbort, { once: true })
  let abortedBy: Summary['abortedBy'] = null
  const stopWith = (expr: string, at: number, actual: number | null): void => {
    if (ac.signal.aborted) return
    abortedBy = { expr, at, actual }
    log(`stopping every generator at ${at} s: ${expr} failed (actual ${actual ?? 'n/a'})`)
    ac.abort()
  }
  const abortOn = o.abortOn ?? []
  const collector: Collector = new Collector({
    plan,
    onSeal: (e) => {
      if (o.progress) o.progress.write(progressLine(e) + '\n')
      if (ac.signal.aborted) return
      const now = e.t + e.span
      if (abortOn.length > 0) {
        // a scope with nothing measured yet (a later stage) cannot fail early
        const failed = evaluateThresholds(abortOn, collector.scopes(now)).find(r => !r.pass && r.actual !== null)
        if (failed) return stopWith(failed.expr, now, failed.actual)
      }
      const stop = o.liveCheck?.(collector, e)
      if (stop) stopWith(stop.expr, now, stop.actual)
    }
  })

  let result
  try {
    result = await driver.run({
      collector,
      base: { url: o.url, scenario: o.scenario, pages, plan, seed: o.seed, runId, timeout: o.timeout, target, amount: o.amount, arrivals: o.model === 'open' ? o.arrivals : undefined },
      signal: ac.signal,
      log
    })
  } finally {
    o.signal?.removeEventListener('abort', onOuterAbort)
  }
  // generation ended when the last source's last step did (not when this thread noticed)
  const lastStep = Math.max(0, ...collector.stageTimings.map(s => s.end))
  collector.finish(lastStep > 0 ? lastStep : Math.max(0, (result.end - result.startAt) / 1000))
  const base = buildSummary({
    scenario: o.scenario, url: o.url, model: o.model, seed: o.seed, startedAt: new Date(result.startAt), finishedAt: new Date(result.startAt + collector.duration * 1000),
    pages: pages.length, aborted: ac.signal.aborted, abortedBy, plan, collector, workers: result.workers
  })
  const thresholdResults: ThresholdResult[] = evaluateThresholds([...o.thresholds, ...abortOn.filter(a => !o.thresholds.some(t => t.expr === a.expr))], {
    total: base.totals,
    stages: new Map(base.stages.map(s => [s.name, s.stats])),
    endpoints: new Map(base.endpoints.map(e => [e.endpoint, e.stats]))
  }).map(r => {
    const by = abortedBy as Summary['abortedBy']
    // the threshold that stopped the run failed, whatever the shortened run adds up to
    return by !== null && r.expr === by.expr ? { ...r, pass: false, note: `stopped the run at ${by.at} s (actual then: ${by.actual ?? 'n/a'})` } : r
  })
  const capacity = o.planUsers ? planCapacity(base, { ...o.planUsers, scenarioWriteShare: writeShare(o.scenario.mix) }) : null
  const summary = attachResults(base, thresholdResults, capacity)
  const files: string[] = []
  if (o.out) {
    await mkdir(o.out, { recursive: true })
    files.push(await writeSummaryJson(o.out, summary))
    files.push(await writeHtmlReport(o.out, summary))
  }
  return { summary, plan, files, collector, pages }
}
