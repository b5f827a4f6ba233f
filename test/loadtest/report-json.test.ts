import t from 'tap'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Value } from '@sinclair/typebox/value'
import { runLoadTest } from '../../loadtest/run.js'
import { loadScenario } from '../../loadtest/scenarios.js'
import { parseThreshold } from '../../loadtest/thresholds.js'
import { SCHEMA_ID, SummarySchema } from '../../loadtest/report-json.js'
import { startFakeSite } from './fake-site.js'

const OUT = join(import.meta.dirname, '../../test-output/loadtest/report-json')

t.test('summary.json follows the published schema', async t => {
  const site = await startFakeSite()
  t.teardown(() => site.close())
  const { summary, files } = await runLoadTest({
    scenario: await loadScenario('mixed'), url: site.url, duration: 1.5, model: 'closed', target: 3, pool: 3, step: 0.5,
    seed: 4, timeout: 5, progress: null, out: OUT,
    thresholds: ['p99<5000', 'hit>0.99999', 'rps{stage=steady}>1', 'p99{endpoint=POST /events}<5000'].map(parseThreshold),
    planUsers: { users: 50_000, thinkTime: 10, headroom: 0.7, tier: { cache: 1, frontend: 1, backend: 1 } }
  })
  t.same(files.map(f => f.slice(OUT.length + 1)), ['summary.json', 'report.html'])
  const doc = JSON.parse(await readFile(join(OUT, 'summary.json'), 'utf8')) as unknown
  const errors = [...Value.Errors(SummarySchema, doc)].slice(0, 5).map(e => `${e.path}: ${e.message}`)
  t.same(errors, [], 'valid against SummarySchema')
  t.same(doc, JSON.parse(JSON.stringify(summary)), 'the file is the summary')
  const s = summary
  t.equal(s.schema, SCHEMA_ID)
  t.equal(s.scenario.name, 'mixed')
  t.ok(s.totals.requests > 0 && s.totals.latency.p99 !== null)
  t.same(Object.keys(s.totals.latency), ['min', 'mean', 'p50', 'p90', 'p95', 'p99', 'p99_9', 'max'])
  t.equal(s.stages.length, 1)
  t.equal(s.stages[0].stats.requests, s.totals.requests, 'one stage holds everything')
  t.equal(s.endpoints.reduce((n, e) => n + e.stats.requests, 0), s.totals.requests, 'endpoints partition the requests')
  t.ok(s.timeline.length >= 1 && s.timeline.length <= 2, 'one entry per second')
  t.same(s.thresholds.map(x => [x.expr, x.pass]), [['p99<5000', true], ['hit>0.99999', false], ['rps{stage=steady}>1', true], ['p99{endpoint=POST /events}<5000', true]])
  t.equal(s.pass, false)
  t.ok(s.capacity && s.capacity.users === 50_000 && s.capacity.assumptions.length > 0)

  t.notOk(Value.Check(SummarySchema, { ...s, totals: { ...s.totals, errorRate: 2 } }), 'the schema has teeth')
})
