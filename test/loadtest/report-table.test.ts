import t from 'tap'
import { runLoadTest } from '../../loadtest/run.js'
import { loadScenario } from '../../loadtest/scenarios.js'
import { parseThreshold } from '../../loadtest/thresholds.js'
import { renderTable } from '../../loadtest/report-table.js'
import { progressBar, progressLine } from '../../loadtest/progress.js'
import { textTable } from '../../loadtest/format.js'
import { startFakeSite } from './fake-site.js'

t.test('end-of-run table: latency, totals, non-2xx, cache, stages, endpoints, thresholds, plan', async t => {
  const site = await startFakeSite({ failPaths: { '/tutorials': 502 } })
  t.teardown(() => site.close())
  const { summary } = await runLoadTest({
    scenario: await loadScenario('mixed'), url: site.url, duration: 1, model: 'closed', target: 2, pool: 2, step: 1,
    seed: 1, timeout: 5, progress: null, thresholds: [parseThreshold('p99<9000'), parseThreshold('errors<0.1%')],
    planUsers: { users: 1000, thinkTime: 10, headroom: 0.7, tier: { cache: 1, frontend: 1, backend: 1 } }
  })
  const out = renderTable(summary)
  t.match(out, /latency \(ms\)\s+p50\s+p90\s+p99\s+p99\.9\s+max\s+mean/)
  t.match(out, /requests\s+[\d,]+ \([\d,]+ reads, [\d,]+ writes\) · [\d,.]+ req\/s/)
  t.match(out, /non-2xx\s+303 ×[\d,]+ · 502 ×[\d,]+/)
  t.match(out, /cache\s+hit ratio \d+\.\d% \(HIT/)
  t.match(out, /origin\s+\d\.\d{3} origin requests per page/)
  t.match(out, /^stage\s+time \(s\)\s+target \(conn\)/m)
  t.match(out, /^steady\s+0\.0–1\.\d\s+2\s/m)
  t.match(out, /^\/tutorials\s+[\d,]+\s+\d+\.\d%.*502 ×/m, 'per-endpoint non-2xx')
  t.match(out, /✓ pass\s+p99<9000/)
  t.match(out, /✗ FAIL\s+errors<0\.1%/)
  t.match(out, /capacity plan for 1,000 concurrent users/)
  t.match(out, /assumptions:/)
  t.match(out, /result: FAIL \(errors<0\.1%\)/)
  t.notMatch(out, /BACKEND_RATE_LIMIT_MAX/, 'no rate-limit hint without 429s')
  summary.totals.non2xx['429'] = 12
  t.match(renderTable(summary), /429 = the backend's per-client write limit: start the tier with BACKEND_RATE_LIMIT_MAX=0/, 'a 429 explains itself')
})

t.test('progress line and bar', async t => {
  const entry = { t: 0, span: 1, stage: 'hold', connections: 8, rate: null, requests: 40, intended: null, sent: null, late: null, dropped: null, errors: 2, errorRate: 0.05, rps: 40, bytes: 4000, p50: 1, p90: 2, p99: 2, max: 3, hitRatio: 0.75 }
  t.match(progressLine(entry), /^\s+1s\s+hold\s+8 conn\s+40\.0 req\/s\s+p99\s+2\.00 ms\s+err\s+2 \(5\.0%\)\s+hit 75\.0%$/)
  t.match(progressLine({ ...entry, t: 1, requests: 0, errors: 0, errorRate: 0, rps: 0, p50: null, p90: null, p99: null, max: null, hitRatio: null }), /^\s+2s\s+hold\s+8 conn\s+0\.0 req\/s\s+p99\s+– ms\s+err\s+0\s+hit –$/, 'a silent second shows as zeros')
  t.match(progressLine({ ...entry, rate: 500 }), /500 req\/s target/)
  t.equal(progressBar(5, 10, 10), '[#####-----]  5/10  50%')
  t.equal(textTable([['a', 'bb'], ['ccc', 'd']], ['l', 'r']), 'a    bb\n───  ──\nccc   d')
})
