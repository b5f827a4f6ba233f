// --workers: the generator in several threads, one merged result. Targets
// are totals: connections and the open model's rate are split between the
// threads (autocannon's own `workers` option would hand each thread the
// whole overallRate).
import t from 'tap'
import { runLoadTest } from '../../loadtest/run.js'
import { loadScenario } from '../../loadtest/scenarios.js'
import { parseThreshold } from '../../loadtest/thresholds.js'
import { startFakeSite } from './fake-site.js'

const served = (site: Awaited<ReturnType<typeof startFakeSite>>): number =>
  [...site.gets.values(), ...site.posts.values()].reduce((a, b) => a + b, 0) + site.rejected.length

t.test('closed model over 2 threads: the connections are split, every response counted once', async t => {
  const site = await startFakeSite()
  t.teardown(() => site.close())
  let sockets = 0
  site.server.on('connection', () => { sockets++ })
  const { summary: s } = await runLoadTest({
    scenario: await loadScenario('mixed'), url: site.url, duration: 2, model: 'closed', target: 5, pool: 5, step: 1,
    seed: 3, timeout: 5, thresholds: [], progress: null, workers: 2
  })
  t.equal(sockets, 1 + 5, 'the sitemap\'s, then 5 connections in all (3 + 2), not 5 per thread')
  t.equal(s.workers, 2)
  t.same(s.agents.map(a => [a.id, a.workers, a.share, a.lost]), [['local', 2, 1, null]])
  t.equal(s.agents[0].requests, s.totals.requests)
  const n = served(site)
  t.ok(n - s.totals.requests >= 0 && n - s.totals.requests <= 5, `the site answered ${n}, the run counted ${s.totals.requests}: one in flight per connection at most is dropped at the end`)
  t.equal(new Set(site.bodies).size, site.bodies.length, 'the threads\' writes never collide')
  t.same(site.rejected, [])
  t.equal(s.endpoints.reduce((x, e) => x + e.stats.requests, 0), s.totals.requests, 'endpoints partition the merged stream')
  t.equal(s.timeline.reduce((x, e) => x + e.requests, 0) <= s.totals.requests, true)
})

t.test('open model over 3 threads: --rate is the total, not the rate of each thread', async t => {
  const site = await startFakeSite()
  t.teardown(() => site.close())
  const { summary: s } = await runLoadTest({
    scenario: await loadScenario('browse'), url: site.url, duration: 2, model: 'open', target: 61, pool: 9, step: 1,
    seed: 1, timeout: 5, thresholds: [], progress: null, workers: 3
  })
  t.equal(served(site), 122, '61 req/s for 2 s, split 21 + 20 + 20')
  t.equal(s.totals.requests, 122)
  t.same(s.timeline.map(e => e.rate), s.timeline.map(() => 61), 'the timeline shows the total target')
})

t.test('a timeout counts against the endpoint that timed out (per-endpoint error thresholds see it)', async t => {
  const site = await startFakeSite({ hangPaths: ['/news'] })
  t.teardown(() => site.close())
  const { summary: s } = await runLoadTest({
    scenario: await loadScenario('browse'), url: site.url, duration: 3, model: 'closed', target: 4, pool: 4, step: 1,
    seed: 1, timeout: 1, progress: null, workers: 2,
    thresholds: ['errors{endpoint=/news}<1%', 'errors{endpoint=/}<1%'].map(parseThreshold)
  })
  const news = s.endpoints.find(e => e.endpoint === '/news')!
  t.ok(news.stats.timeouts > 0, `/news timed out ${news.stats.timeouts} times`)
  t.equal(news.stats.requests, 0, 'and never answered')
  t.equal(news.stats.errorRate, 1, 'every attempt at /news failed')
  t.equal(s.endpoints.filter(e => e.endpoint !== '/news').reduce((n, e) => n + e.stats.timeouts, 0), 0, 'no other endpoint is blamed')
  t.equal(s.totals.timeouts, news.stats.timeouts)
  t.same(s.thresholds.map(x => [x.expr, x.pass]), [['errors{endpoint=/news}<1%', false], ['errors{endpoint=/}<1%', true]])
})

t.test('an abort threshold stops every thread of a local run', async t => {
  const site = await startFakeSite({ failPaths: { '/': 500, '/news': 500 } })
  t.teardown(() => site.close())
  const logs: string[] = []
  const { summary: s } = await runLoadTest({
    scenario: await loadScenario('browse'), url: site.url, duration: 30, model: 'closed', target: 4, pool: 4, step: 1,
    seed: 1, timeout: 5, thresholds: [], abortOn: [parseThreshold('errors<5%')], progress: null, workers: 2, log: l => logs.push(l)
  })
  t.equal(s.abortedBy?.expr, 'errors<5%')
  t.ok(s.duration < 10, `stopped after ${s.duration} s of 30`)
  t.same(s.thresholds.map(x => [x.expr, x.pass]), [['errors<5%', false]], 'and the run fails on it')
  t.equal(s.pass, false)
  t.match(logs.join('\n'), /stopping every generator at \d+ s: errors<5% failed/)
})
