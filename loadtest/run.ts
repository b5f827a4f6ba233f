// One load-test run, start to finish: sitemap → request mix → stage schedule
// → samples → summary (thresholds, capacity) → reports. cli.ts parses flags
// and maps the outcome to an exit code; tests call runLoadTest directly.
import { mkdir } from 'node:fs/promises'
import { Collector } from './collect.js'
import { planCapacity, type CapacityOptions } from './capacity.js'
import { startProgress } from './progress.js'
import { attachResults, buildSummary, writeSummaryJson, type Summary } from './report-json.js'
import { writeHtmlReport } from './report-html.js'
import { RequestGenerator } from './requests.js'
import { writeShare, type Scenario } from './scenarios.js'
import { loadSitemap, rankPages } from './sitemap.js'
import { planSchedule, runSchedule, type LoadModel, type PlannedStage } from './stages.js'
import { evaluateThresholds, type Threshold } from './thresholds.js'

export type PlanUsersOptions = Omit<CapacityOptions, 'scenarioWriteShare'>

export interface RunOptions {
  scenario: Scenario
  url: string
  /** seconds */
  duration: number
  model: LoadModel
  /** 100 % of the stage targets: connections (closed) or req/s (open) */
  target: number
  /** open model: connections carrying the rate */
  pool: number
  step: number
  seed: number
  /** per-request timeout, seconds */
  timeout: number
  thresholds: Threshold[]
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
}

export async function runLoadTest (o: RunOptions): Promise<RunOutcome> {
  const log = o.log ?? (() => {})
  const plan = planSchedule(o.scenario.stages, { duration: o.duration, model: o.model, target: o.target, pool: o.pool, step: o.step })
  const sitemap = await loadSitemap(o.url)
  const pages = rankPages(sitemap)
  const generator = new RequestGenerator({ scenario: o.scenario, pages, base: o.url, seed: o.seed })
  const steps = plan.reduce((n, s) => n + s.steps.length, 0)
  log(`${o.scenario.name}: ${pages.length} pages from the sitemap; ${plan.length} stage(s) in ${steps} step(s), ${o.duration} s, ${o.model} model (${o.model === 'open' ? `up to ${o.target} req/s over ${o.pool} connections` : `up to ${o.target} connections`})`)
  const collector = new Collector()
  const startedAt = new Date()
  collector.start()
  const stopProgress = o.progress === null ? () => {} : startProgress(collector, { stream: o.progress })
  try {
    await runSchedule(plan, {
      url: o.url,
      requests: generator.autocannonRequests(collector),
      collector,
      timeout: o.timeout,
      signal: o.signal
    })
  } finally {
    collector.finish()
    stopProgress()
  }
  const finishedAt = new Date()
  const base = buildSummary({
    scenario: o.scenario, url: o.url, model: o.model, seed: o.seed, startedAt, finishedAt,
    pages: pages.length, aborted: o.signal?.aborted ?? false, plan, collector
  })
  const thresholdResults = evaluateThresholds(o.thresholds, {
    total: base.totals,
    stages: new Map(base.stages.map(s => [s.name, s.stats])),
    endpoints: new Map(base.endpoints.map(e => [e.endpoint, e.stats]))
  })
  const capacity = o.planUsers ? planCapacity(base, { ...o.planUsers, scenarioWriteShare: writeShare(o.scenario.mix) }) : null
  const summary = attachResults(base, thresholdResults, capacity)
  const files: string[] = []
  if (o.out) {
    await mkdir(o.out, { recursive: true })
    files.push(await writeSummaryJson(o.out, summary))
    files.push(await writeHtmlReport(o.out, summary))
  }
  return { summary, plan, files }
}
