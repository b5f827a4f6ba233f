// `--knee`: the knee search through the tier (--url), then, when their URLs
// are given, straight at one frontend and at one backend's write API; one
// summary with every curve and a capacity plan from the knees.
import { mkdir } from 'node:fs/promises'
import { planFromKnees } from './capacity.js'
import { kneeCheck, kneeResult, staircase, type KneeResult, type KneeSearchOptions } from './knee.js'
import { writeHtmlReport } from './report-html.js'
import { writeSummaryJson, type Summary } from './report-json.js'
import { runLoadTest, type RunOptions, type RunOutcome } from './run.js'
import { writeShare } from './scenarios.js'

export interface KneeRunOptions extends Omit<RunOptions, 'plan' | 'liveCheck' | 'model' | 'target' | 'duration' | 'step' | 'pool' | 'thresholds' | 'api'> {
  knee: KneeSearchOptions
  /** search straight at one frontend too */
  frontendUrl?: string
  /** search straight at one backend's write API too */
  backendUrl?: string
}

export interface KneeOutcome extends RunOutcome {
  knees: { site: KneeResult, frontend: KneeResult | null, backend: KneeResult | null }
}

async function search (o: KneeRunOptions, url: string, extra: Partial<RunOptions>): Promise<{ outcome: RunOutcome, knee: KneeResult }> {
  const plan = staircase(o.knee)
  const duration = plan.reduce((end, s) => Math.max(end, s.start + s.duration), 0)
  const outcome = await runLoadTest({
    ...o,
    ...extra,
    url,
    plan,
    model: 'open',
    target: Math.max(...plan.map(s => s.to)),
    pool: o.knee.pool,
    duration,
    step: o.knee.stepDuration,
    thresholds: [],
    liveCheck: kneeCheck(o.knee, plan),
    out: undefined,
    planUsers: undefined
  })
  const knee = kneeResult(o.knee, url, outcome.summary.stages)
  const log = o.log ?? (() => {})
  log(knee.lastPassingRate === null
    ? `knee at ${url}: the first step (${knee.steps[0]?.rate ?? o.knee.start} req/s) already broke`
    : `knee at ${url}: ${knee.lastPassingRate} req/s held${knee.brokeAt ? `, ${knee.brokeAt.rate} req/s broke (${knee.brokeAt.reasons.join('; ')})` : ' (nothing broke up to the maximum)'}`)
  return { outcome, knee }
}

export async function runKneeSearch (o: KneeRunOptions): Promise<KneeOutcome> {
  const log = o.log ?? (() => {})
  log(`knee search through ${o.url}: ${o.knee.thresholds.map(t => t.expr).join(', ')}`)
  const site = await search(o, o.url, {})
  let frontend: KneeResult | null = null
  let backend: KneeResult | null = null
  if (o.frontendUrl && !o.signal?.aborted) {
    log(`knee search straight at a frontend: ${o.frontendUrl}`)
    frontend = (await search(o, o.frontendUrl, {})).knee
  }
  if (o.backendUrl && !o.signal?.aborted) {
    log(`knee search straight at a backend's write API: ${o.backendUrl}`)
    // a backend has no sitemap: slugs come from the tier's
    backend = (await search(o, o.backendUrl, { api: 'backend', pages: site.outcome.pages })).knee
  }
  const knees = { site: site.knee, frontend, backend }
  const capacity = o.planUsers ? planFromKnees({ ...o.planUsers, site: site.knee, frontend, backend, scenarioWriteShare: writeShare(o.scenario.mix) }) : null
  const measured = [site.knee, frontend, backend].filter((k): k is KneeResult => k !== null)
  const summary: Summary = { ...site.outcome.summary, knee: knees, capacity, pass: measured.every(k => k.lastPassingRate !== null) }
  const files: string[] = []
  if (o.out) {
    await mkdir(o.out, { recursive: true })
    files.push(await writeSummaryJson(o.out, summary))
    files.push(await writeHtmlReport(o.out, summary))
  }
  return { ...site.outcome, summary, files, knees }
}
