import t from 'tap'
import { evaluateThresholds, formatThresholdValue, parseThreshold } from '../../loadtest/thresholds.js'
import { emptyStats } from '../../loadtest/report-json.js'
import type { Stats } from '../../loadtest/collect.js'

t.test('parses the documented forms', async t => {
  t.match(parseThreshold('p99<250'), { metric: 'p99', scope: 'total', name: null, op: '<', limit: 250 })
  t.match(parseThreshold('errors<0.1%'), { metric: 'errors', op: '<', limit: 0.001 })
  t.match(parseThreshold('hit>0.95'), { metric: 'hit', op: '>', limit: 0.95 })
  t.match(parseThreshold('hit >= 95%'), { metric: 'hit', op: '>=', limit: 0.95 })
  t.match(parseThreshold('p99{endpoint=/news/:slug}<300'), { metric: 'p99', scope: 'endpoint', name: '/news/:slug', limit: 300 })
  t.match(parseThreshold('rps{stage=hold}>1000'), { metric: 'rps', scope: 'stage', name: 'hold', op: '>', limit: 1000 })
  t.match(parseThreshold('errors{endpoint=POST /events}<=1%'), { scope: 'endpoint', name: 'POST /events', op: '<=', limit: 0.01 })
  t.match(parseThreshold('p99.9<1s'), { metric: 'p99.9', limit: 1000 })
  t.match(parseThreshold('p999<800ms'), { metric: 'p99.9', limit: 800 })
  t.match(parseThreshold('mean<20'), { metric: 'avg' })
  t.match(parseThreshold('requests>100'), { metric: 'requests', limit: 100 })
  t.match(parseThreshold('origin<0.05'), { metric: 'origin' })
})

t.test('rejects what it cannot read, saying why', async t => {
  t.throws(() => parseThreshold('p99 250'), { name: 'ThresholdError', message: /expected METRIC/ })
  t.throws(() => parseThreshold('latency<3'), /unknown metric "latency"/)
  t.throws(() => parseThreshold('p99<5%'), /latency in ms/)
  t.throws(() => parseThreshold('hit>95'), /ratio between 0 and 1.*hit>95%/)
  t.throws(() => parseThreshold('errors<5ms'), /is a ratio/)
  t.throws(() => parseThreshold('rps>5%'), /plain number/)
  t.throws(() => parseThreshold('p99{host=x}<5'), /expected METRIC/)
  t.throws(() => parseThreshold('p99=5'), /expected METRIC/)
})

function stats (over: Partial<Stats> & { p99?: number, hitRatio?: number | null }): Stats {
  const s = emptyStats()
  Object.assign(s, over)
  if (over.p99 !== undefined) s.latency = { ...s.latency, p50: 1, p99: over.p99 }
  if (over.hitRatio !== undefined) s.cache = { ...s.cache, hitRatio: over.hitRatio }
  return s
}

t.test('evaluates against totals, stages and endpoints', async t => {
  const total = stats({ requests: 1000, errors: 2, errorRate: 0.002, rps: 500, p99: 120, hitRatio: 0.97 })
  const scopes = {
    total,
    stages: new Map([['hold', stats({ requests: 600, rps: 900, p99: 200 })]]),
    endpoints: new Map([['/news/:slug', stats({ requests: 300, p99: 350 })]])
  }
  const r = evaluateThresholds(['p99<250', 'errors<0.1%', 'hit>0.95', 'p99{endpoint=/news/:slug}<300', 'rps{stage=hold}>1000', 'rps{stage=peak}>1', 'p99<=120'].map(parseThreshold), scopes)
  t.same(r.map(x => [x.expr, x.pass, x.actual]), [
    ['p99<250', true, 120],
    ['errors<0.1%', false, 0.002],
    ['hit>0.95', true, 0.97],
    ['p99{endpoint=/news/:slug}<300', false, 350],
    ['rps{stage=hold}>1000', false, 900],
    ['rps{stage=peak}>1', false, null],
    ['p99<=120', true, 120]
  ])
  t.match(r[5].note, /no stage "peak" in this run \(have: hold\)/)
  const noCache = evaluateThresholds([parseThreshold('hit>0.5')], { total: stats({ requests: 5, hitRatio: null }), stages: new Map(), endpoints: new Map() })
  t.equal(noCache[0].pass, false, 'no cache header: a hit threshold fails rather than passing silently')
  t.match(noCache[0].note, /X-Cache/)
  t.equal(formatThresholdValue('errors', 0.002), '0.2%')
  t.equal(formatThresholdValue('p99', 12.345), '12.35 ms')
})

t.test('open model: late and dropped are shares of the intended arrivals; the closed model has none', async t => {
  const open: Stats = { ...emptyStats(), requests: 95, arrivals: { intended: 100, sent: 98, late: 4, lagged: 1, dropped: 2, lateRatio: 0.04, droppedRatio: 0.02, laggedRatio: 0.01 } }
  const scopes = (total: Stats) => ({ total, stages: new Map(), endpoints: new Map() })
  const [late, dropped] = evaluateThresholds([parseThreshold('late<5%'), parseThreshold('dropped<1%')], scopes(open))
  t.same([late.actual, late.pass, dropped.actual, dropped.pass], [0.04, true, 0.02, false])
  t.equal(formatThresholdValue('dropped', 0.02), '2%')
  const [closed] = evaluateThresholds([parseThreshold('late<1%')], scopes({ ...emptyStats(), requests: 10 }))
  t.same([closed.pass, closed.note], [false, 'closed model: requests have no intended time (use --rate)'])
})
