// Every scenario end to end against the fake site: short, few connections.
import t from 'tap'
import { runLoadTest, type RunOptions } from '../../loadtest/run.js'
import { loadScenario } from '../../loadtest/scenarios.js'
import { parseThreshold } from '../../loadtest/thresholds.js'
import { startFakeSite } from './fake-site.js'

async function run (name: string, url: string, o: Partial<RunOptions> = {}): Promise<Awaited<ReturnType<typeof runLoadTest>>> {
  return runLoadTest({
    scenario: await loadScenario(name), url, duration: 1.2, model: 'closed', target: 3, pool: 3, step: 0.4,
    seed: 1, timeout: 5, thresholds: [], progress: null, ...o
  })
}

t.test('browse', async t => {
  const site = await startFakeSite()
  t.teardown(() => site.close())
  const { summary: s } = await run('browse', site.url, { thresholds: [parseThreshold('errors<1%'), parseThreshold('hit>0.5')] })
  t.ok(s.totals.requests > 50, `${s.totals.requests} requests`)
  t.equal(s.totals.writes, 0)
  t.equal(s.totals.errors, 0)
  t.equal(s.endpoints[0].endpoint, '/news/:slug', 'the article pattern sums the long tail')
  const home = s.endpoints.find(e => e.endpoint === '/')!
  const news = s.endpoints.find(e => e.endpoint === '/news')!
  t.ok(home.stats.requests > news.stats.requests, 'home is the most read single page')
  t.ok(s.totals.cache.hitRatio! > 0.9, 'the fake cache warms up')
  t.equal(s.totals.cache.miss, [...site.gets.keys()].length, 'one MISS per distinct page, then HITs')
  // autocannon drops the requests in flight when a step ends: at most one per connection
  const served = [...site.gets.values()].reduce((a, b) => a + b, 0)
  t.ok(served - s.totals.requests >= 0 && served - s.totals.requests <= 3, `counted ${s.totals.requests} of ${served} served (in flight at the end: ${served - s.totals.requests})`)
  t.ok(s.pass)
})

t.test('spike: stage names in every report part', async t => {
  const site = await startFakeSite()
  t.teardown(() => site.close())
  const { summary: s } = await run('spike', site.url, { duration: 1.5, target: 4, step: 0.2 })
  t.same(s.stages.map(x => x.name), ['ramp', 'hold', 'down'])
  t.same(s.stages[0].steps.map(x => x.connections), [1, 4], '2% → 100% of 4 connections in 0.3 s, two steps')
  t.ok(s.stages.every(x => x.stats.requests > 0), 'each stage has samples')
  t.ok(s.timeline.every(x => ['ramp', 'hold', 'down'].includes(x.stage)))
  t.ok(s.duration > 1.4 && s.duration < 2.5, `ran ${s.duration} s of 1.5`)
})

t.test('mixed: writes go through the forms, each body unique, none rejected', async t => {
  const site = await startFakeSite()
  t.teardown(() => site.close())
  const { summary: s } = await run('mixed', site.url)
  t.ok(s.totals.writes > 5, `${s.totals.writes} writes`)
  t.same(site.rejected, [], 'the site accepted every form')
  t.equal(new Set(site.bodies).size, site.bodies.length, 'unique bodies')
  t.equal(s.totals.status['303'], s.totals.writes, 'every write answered 303')
  t.equal(s.totals.errors, 0, '303 is not an error')
  t.ok(s.endpoints.some(e => e.endpoint === 'POST /news/:slug/comments'))
  t.ok(s.endpoints.some(e => e.endpoint === 'POST /events'))
  t.ok(s.endpoints.some(e => e.endpoint === 'POST /tutorials/:slug/done'))
})

t.test('signup-rush in the open model (arrival rate)', async t => {
  const site = await startFakeSite()
  t.teardown(() => site.close())
  const { summary: s } = await run('signup-rush', site.url, { model: 'open', target: 200, pool: 4, duration: 2, step: 1 })
  t.equal(s.model, 'open')
  // stages shorter than 1 s are a single step in the open model
  t.same(s.stages.map(x => x.steps.map(y => y.rate)), [[200], [200], [10]], 'rates per step recorded')
  t.ok(s.stages.flatMap(x => x.steps).every(x => x.rate !== null && x.connections <= 4))
  t.ok(s.totals.writes / s.totals.requests > 0.6, 'mostly writes')
  t.ok(s.totals.rps < 200 * 1.3, `the rate cap holds (${s.totals.rps} req/s for a 200 req/s target)`)
  t.ok(s.totals.rps > 30, 'and load flows')
  t.same(site.rejected, [])
})

t.test('bypassing the cache: no hit ratio, every request reaches the origin', async t => {
  const site = await startFakeSite({ cache: false })
  t.teardown(() => site.close())
  const { summary: s } = await run('browse', site.url, { duration: 0.8, thresholds: [parseThreshold('hit>0.5')] })
  t.equal(s.totals.cache.hitRatio, null)
  t.equal(s.totals.originPerRequest, 1)
  t.equal(s.pass, false, 'a hit threshold cannot pass without a cache')
})

t.test('errors, non-2xx and failing thresholds are reported per endpoint', async t => {
  const site = await startFakeSite({ failPaths: { '/news': 503 } })
  t.teardown(() => site.close())
  const { summary: s } = await run('browse', site.url, {
    duration: 0.8,
    thresholds: ['errors<1%', 'errors{endpoint=/}<1%', 'errors{endpoint=/news}<1%'].map(parseThreshold)
  })
  const news = s.endpoints.find(e => e.endpoint === '/news')!
  t.equal(news.stats.errorRate, 1)
  t.same(Object.keys(news.stats.non2xx), ['503'])
  t.same(s.thresholds.map(x => x.pass), [false, true, false])
  t.equal(s.pass, false)
})

t.test('an unreachable site fails before any load', async t => {
  await t.rejects(run('browse', 'http://127.0.0.1:9/'), /cannot read the sitemap/)
})
