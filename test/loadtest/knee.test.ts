// The knee search against sites that fall over above a rate we chose: the
// knee found must be that rate's step, and the plan must be computed from it.
import t from 'tap'
import { readFile, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { Value } from '@sinclair/typebox/value'
import { kneeRates, kneeResult, staircase, checkKneeThresholds } from '../../loadtest/knee.js'
import { planFromKnees } from '../../loadtest/capacity.js'
import { Group, type Stats } from '../../loadtest/group.js'
import { runKneeSearch } from '../../loadtest/knee-run.js'
import { loadScenario } from '../../loadtest/scenarios.js'
import { parseThreshold } from '../../loadtest/thresholds.js'
import { SummarySchema, type Summary } from '../../loadtest/report-json.js'
import { renderTable } from '../../loadtest/report-table.js'
import { startFakeSite } from './fake-site.js'

const GET = { method: 'GET', endpoint: '/', read: true }
const OUT = join(import.meta.dirname, '../../test-output/loadtest/knee')

t.test('the staircase: rates by addition or by a factor, bounded', async t => {
  t.same(kneeRates({ start: 100, step: { add: 100 }, maxRate: 450 }), [100, 200, 300, 400])
  t.same(kneeRates({ start: 25, step: { factor: 2 }, maxRate: 200 }), [25, 50, 100, 200])
  t.equal(kneeRates({ start: 1, step: { add: 1 }, maxRate: 1e9 }).length, 60, 'at most 60 steps')
  const plan = staircase({ start: 10, step: { add: 10 }, maxRate: 30, stepDuration: 5, thresholds: [], pool: 15 })
  t.same(plan.map(s => [s.name, s.start, s.duration, s.steps[0].rate, s.steps[0].connections]), [['rate-10', 0, 5, 10, 15], ['rate-20', 5, 5, 20, 15], ['rate-30', 10, 5, 30, 15]])
  t.throws(() => checkKneeThresholds([parseThreshold('p99{endpoint=/}<100')]), /judged over each whole step/)
  t.throws(() => checkKneeThresholds([]), /at least one --knee/)
})

t.test('a step that broke while the generator lagged behind its clock is the generator\'s limit, and the plan calls the knee a lower bound', async t => {
  const o = { start: 100, step: { add: 100 }, maxRate: 300, stepDuration: 10, thresholds: [parseThreshold('p99<250')], pool: 300 }
  const step = (rate: number, p99Ms: number, lagged: number): { name: string, stats: Stats, planned: { to: number, duration: number }, start: number, end: number } => {
    const g = new Group()
    for (let i = 0; i < rate * 10; i++) g.record(GET, 200, 100, i % 50 === 0 ? p99Ms * 1000 : 1000, 'HIT', false)
    Object.assign(g.arrivals, { intended: rate * 10, sent: rate * 10, late: lagged, lagged, dropped: 0 })
    return { name: `rate-${rate}`, stats: g.stats(10), planned: { to: rate, duration: 10 }, start: 0, end: 10 }
  }
  const byGenerator = kneeResult(o, 'http://x/', [step(100, 5, 0), step(200, 900, 200)])
  t.same(byGenerator.brokeAt?.by, 'generator')
  t.match(byGenerator.brokeAt?.reasons.join(' '), /the generator's limit, not the target's/)
  t.same(byGenerator.steps.map(s => s.limitedBy), [null, 'generator'])
  const plan = planFromKnees({ users: 10_000, thinkTime: 10, headroom: 0.7, tier: { cache: 1, frontend: 1, backend: 1 }, scenarioWriteShare: 0.1, site: byGenerator })
  t.match(plan.cache.basis, /the load generator could not keep up, so this is a lower bound/)
  const byTarget = kneeResult(o, 'http://x/', [step(100, 5, 0), step(200, 900, 10)])
  t.same(byTarget.brokeAt?.by, 'target', 'a few late arrivals (0.5%) do not excuse the target')
  // one step the generator alone failed (a busy machine's hiccup) does not end the search; two in a row do
  const hiccup = kneeResult({ ...o, maxRate: 400 }, 'http://x/', [step(100, 5, 0), step(200, 900, 200), step(300, 5, 0), step(400, 900, 0)])
  t.same([hiccup.lastPassingRate, hiccup.brokeAt?.rate, hiccup.brokeAt?.by], [300, 400, 'target'])
  const twice = kneeResult({ ...o, maxRate: 400 }, 'http://x/', [step(100, 5, 0), step(200, 900, 200), step(300, 900, 300), step(400, 5, 0)])
  t.same([twice.lastPassingRate, twice.brokeAt?.rate, twice.brokeAt?.by, twice.steps.length], [100, 300, 'generator', 3])
})

t.test('the knee found is the step above the rate where the site falls over; the plan comes from it, per role', async t => {
  // through the tier: holds 150 req/s; a frontend holds 75; a backend's write API 37
  // (each half again the last step that must pass, 100 / 50 / 25, and below
  // the step that must fail, 200 / 100 / 50). A site falls over once three
  // seconds together held more than three seconds' worth (fake-site.ts), so a
  // busy machine's catch-up burst is not overload; from then on a second is
  // added to every answer: far above the p99 limit, and far above what a
  // loaded test machine adds on its own. 6 s steps leave the failing step
  // three slow seconds.
  const site = await startFakeSite({ capacity: { rate: 150, slowMs: 1000 } })
  const frontend = await startFakeSite({ capacity: { rate: 75, slowMs: 1000 }, cache: false })
  const backend = await startFakeSite({ capacity: { rate: 37, slowMs: 1000 } })
  t.teardown(async () => { await site.close(); await frontend.close(); await backend.close() })
  const out = join(OUT, 'roles')
  await rm(out, { recursive: true, force: true })
  const logs: string[] = []
  const { summary: s, knees } = await runKneeSearch({
    scenario: await loadScenario('mixed'),
    url: site.url,
    frontendUrl: frontend.url,
    backendUrl: backend.url,
    knee: { start: 25, step: { factor: 2 }, maxRate: 400, stepDuration: 6, thresholds: [parseThreshold('p99<900'), parseThreshold('errors<1%')], pool: 20 },
    seed: 1, timeout: 5, progress: null, workers: 1, out,
    log: l => logs.push(l),
    planUsers: { users: 100_000, thinkTime: 10, headroom: 0.7, tier: { cache: 1, frontend: 1, backend: 1 } }
  })
  // A failed step the generator fell behind on (a loaded test machine) does not end a search: the
  // next step is tried too, and fails as well. What the knee is made of stays the same.
  const upToBreak = (steps: Array<{ rate: number, pass: boolean }> | undefined) => {
    const list = steps ?? []
    const i = list.findIndex(x => !x.pass)
    t.ok(list.slice(i).every(x => !x.pass), `nothing passed after the first failed step: ${JSON.stringify(list)}`)
    t.ok(list.length - i <= 2, 'a search ends at the latest one step after the first failure')
    return list.slice(0, i + 1).map(x => [x.rate, x.pass])
  }
  t.same(upToBreak(knees.site.steps), [[25, true], [50, true], [100, true], [200, false]], `through the tier: ${JSON.stringify(knees.site.steps)}`)
  t.equal(knees.site.lastPassingRate, 100)
  // The step that broke is 200, or — when the generator lagged on it — the next one, which the target failed.
  const broke = knees.site.brokeAt
  const at200 = knees.site.steps.find(x => x.rate === 200)
  t.ok(broke?.rate === 200 || (broke?.rate === 400 && at200?.limitedBy === 'generator'), `broke at ${broke?.rate} (${broke?.by})`)
  t.match(broke?.reasons.join(' '), /p99<900 \(actual \d+/, 'it broke on the named threshold')
  t.ok(site.degradedAt() !== null, 'the site did fall over')
  t.ok(knees.site.steps.filter(x => x.pass).every(x => Math.abs(x.achieved - x.rate) <= x.rate * 0.1), 'the passing steps delivered their rate')
  t.notOk([...site.gets.keys()].length === 0)
  t.same(upToBreak(knees.frontend?.steps), [[25, true], [50, true], [100, false]], 'straight at the frontend')
  t.equal(knees.frontend?.lastPassingRate, 50)
  t.same(upToBreak(knees.backend?.steps), [[25, true], [50, false]], 'straight at the backend')
  t.equal(knees.backend?.lastPassingRate, 25)
  t.ok([...backend.apiWrites.values()].reduce((a, b) => a + b, 0) > 50, 'the backend search sent writes to the JSON API')
  t.same(backend.rejected, [], 'every API write was valid, with its own Idempotency-Key')
  t.equal(backend.gets.size, 0, 'and no page reads')

  const p = s.capacity!
  const R = 100_000 / 10
  t.equal(p.cache.perNodeRps, 100, 'a cache node takes the tier\'s knee')
  t.equal(p.cache.instances, Math.ceil(R / (100 * 0.7)))
  t.match(p.cache.basis, /knee through 1 cache node\(s\): 100 req\/s held/)
  t.equal(p.frontend.perNodeRps, 50, 'a frontend takes its own knee')
  t.equal(p.frontend.instances, Math.ceil((R * knees.site.originShare!) / (50 * 0.7)))
  t.equal(p.backend.perNodeRps, 25)
  t.equal(p.backend.instances, Math.ceil((R * knees.site.writeShare!) / (25 * 0.7)))
  t.ok(p.writeShare > 0.05 && p.writeShare < 0.15, `write share measured at the last passing step (${p.writeShare})`)

  const doc = JSON.parse(await readFile(join(out, 'summary.json'), 'utf8')) as Summary
  t.same([...Value.Errors(SummarySchema, doc)].slice(0, 3).map(e => `${e.path}: ${e.message}`), [])
  t.equal(doc.knee?.site.lastPassingRate, 100)
  const html = await readFile(join(out, 'report.html'), 'utf8')
  t.match(html, /id="plot-knee-site"/, 'the report shows the curve')
  t.match(html, /Last passing rate <b>100 req\/s<\/b>/)
  t.match(html, /id="plot-knee-frontend"/)
  const table = renderTable(s)
  t.match(table, /knee through the tier: .*\n(.*\n){2}\s+25\s+[\d.]+/, 'the table lists the steps')
  t.match(table, new RegExp(`last passing rate 100 req/s, broke at ${broke?.rate} req/s`))
  t.match(logs.join('\n'), new RegExp(`knee at http://127\\.0\\.0\\.1:\\d+: 100 req/s held, ${broke?.rate} req/s broke`))
})

t.test('a site that never breaks within the range: the last rate is a lower bound', async t => {
  const site = await startFakeSite()
  t.teardown(() => site.close())
  const { knees } = await runKneeSearch({
    scenario: await loadScenario('browse'), url: site.url,
    knee: { start: 20, step: { add: 20 }, maxRate: 40, stepDuration: 2, thresholds: [parseThreshold('p99<5000')], pool: 4 },
    seed: 1, timeout: 5, progress: null, workers: 1
  })
  t.same(knees.site.steps.map(x => x.pass), [true, true])
  t.equal(knees.site.lastPassingRate, 40)
  t.equal(knees.site.brokeAt, null)
})
