import t from 'tap'
import { planSchedule, rateChunks, resolveAmount, runSchedule } from '../../loadtest/stages.js'
import { BUILTIN_SCENARIOS } from '../../loadtest/scenarios.js'
import { Collector } from '../../loadtest/collect.js'
import { RequestGenerator } from '../../loadtest/requests.js'
import { startFakeSite } from './fake-site.js'

t.test('resolveAmount: absolute or percentage of the whole', async t => {
  t.equal(resolveAmount(12, 100), 12)
  t.equal(resolveAmount('20%', 30), 6)
  t.equal(resolveAmount('2.5%', 200), 5)
})

t.test('spike schedule, closed model: ramp from near zero, hold, down', async t => {
  const plan = planSchedule(BUILTIN_SCENARIOS.spike.stages, { duration: 30, model: 'closed', target: 100, pool: 100, step: 1 })
  t.same(plan.map(s => s.name), ['ramp', 'hold', 'down'])
  t.same(plan.map(s => [s.start, s.duration]), [[0, 6], [6, 18], [24, 6]], 'stages are contiguous and fill the duration')
  const ramp = plan[0].steps
  t.equal(ramp.length, 6, 'one step per second of ramp')
  t.same(ramp.map(s => s.connections), [2, 22, 41, 61, 80, 100], 'linear from 2% to 100%')
  t.same(ramp.map(s => s.start), [0, 1, 2, 3, 4, 5])
  t.ok(ramp.every(s => s.rate === null && s.stage === 'ramp' && s.duration === 1))
  t.equal(plan[1].steps.length, 1, 'a flat stage is one autocannon instance')
  t.same(plan[1].steps[0], { stage: 'hold', stageIndex: 1, index: 6, start: 6, duration: 18, connections: 100, rate: null })
  t.same(plan[2].steps.map(s => s.connections), [100, 81, 62, 43, 24, 5])
  const all = plan.flatMap(s => s.steps)
  t.same(all.map(s => s.index), all.map((_, i) => i), 'steps numbered in order')
  const end = all.at(-1)!
  t.equal(end.start + end.duration, 30)
})

t.test('open model: targets are rates over a connection pool', async t => {
  const plan = planSchedule(BUILTIN_SCENARIOS.spike.stages, { duration: 20, model: 'open', target: 1000, pool: 50, step: 1 })
  const ramp = plan[0].steps
  t.same(ramp.map(s => s.rate), [20, 347, 673, 1000])
  t.same(ramp.map(s => s.connections), [20, 50, 50, 50], 'connections never exceed the rate nor the pool')
  t.same(plan[1].steps.map(s => s.rate), [1000])
  // sub-second steps would get a whole second of autocannon's rate quota
  const fine = planSchedule([{ name: 'r', duration: 3, from: 1, to: 300 }], { duration: 3, model: 'open', target: 300, pool: 30, step: 0.25 })
  t.equal(fine[0].steps.length, 3, 'open-model steps last at least a second')
})

t.test('open model: autocannon\'s per-second quota is cut to the step length', async t => {
  t.same(rateChunks(3, 100), [{ duration: 3, rate: 100 }])
  t.same(rateChunks(1.4, 100), [{ duration: 1, rate: 100 }, { duration: 0.4, rate: 40 }])
  t.same(rateChunks(0.25, 10), [{ duration: 0.25, rate: 3 }])
  t.same(rateChunks(0.05, 4), [{ duration: 0.05, rate: 1 }])
})

t.test('sub-second steps, absolute amounts, minimum of one connection, step cap', async t => {
  const plan = planSchedule([
    { name: 'a', duration: 2, from: 1, to: 4 },
    { name: 'b', duration: '50%', to: '1%' }
  ], { duration: 4, model: 'closed', target: 10, pool: 10, step: 0.5 })
  t.same(plan[0].steps.map(s => [s.start, s.duration, s.connections]), [[0, 0.5, 1], [0.5, 0.5, 2], [1, 0.5, 3], [1.5, 0.5, 4]])
  t.same(plan[1].steps.map(s => s.connections), [1], '1% of 10 rounds up to at least one connection')
  const long = planSchedule([{ name: 'x', duration: 3600, from: 1, to: 100 }], { duration: 3600, model: 'closed', target: 100, pool: 100, step: 1 })
  t.equal(long[0].steps.length, 120, 'at most 120 steps per stage')
  t.throws(() => planSchedule([{ name: 'x', duration: 1, to: 1 }], { duration: 0, model: 'closed', target: 1, pool: 1, step: 1 }), /duration/)
})

t.test('runSchedule runs one autocannon instance per step, stitched on one clock', async t => {
  const site = await startFakeSite()
  t.teardown(() => site.close())
  let sockets = 0
  site.server.on('connection', () => { sockets++ })
  const plan = planSchedule([
    { name: 'low', duration: 0.6, to: 1 },
    { name: 'high', duration: 0.6, to: 4 }
  ], { duration: 1.2, model: 'closed', target: 4, pool: 4, step: 1 })
  const collector = new Collector()
  const gen = new RequestGenerator({ scenario: BUILTIN_SCENARIOS.browse, pages: ['/', '/news', '/news/article-1'], base: site.url, seed: 1 })
  const seen: string[] = []
  collector.start()
  await runSchedule(plan, { url: site.url, requests: gen.autocannonRequests(collector), collector, onStep: s => seen.push(`${s.stage}:${s.connections}`) })
  collector.finish()
  t.same(seen, ['low:1', 'high:4'])
  t.equal(sockets, 5, 'one connection in the first step, four in the second')
  t.same(collector.stageTimings.map(s => s.name), ['low', 'high'])
  const [low, high] = collector.stageTimings
  t.ok(low.end === high.start && low.start < 0.05, 'stages back to back from the start')
  t.ok(high.end > 1.1 && high.end < 2, `run lasted about the planned 1.2 s (${high.end.toFixed(2)} s)`)
  t.ok(collector.stages.get('low')!.requests > 0 && collector.stages.get('high')!.requests > 0, 'samples attributed to both stages')
  t.equal(collector.total.requests, collector.stages.get('low')!.requests + collector.stages.get('high')!.requests)
})

t.test('an abort signal stops the schedule', async t => {
  const site = await startFakeSite()
  t.teardown(() => site.close())
  const plan = planSchedule([{ name: 'a', duration: 5, to: 2 }, { name: 'b', duration: 5, to: 2 }], { duration: 10, model: 'closed', target: 2, pool: 2, step: 1 })
  const collector = new Collector()
  const gen = new RequestGenerator({ scenario: BUILTIN_SCENARIOS.browse, pages: ['/'], base: site.url, seed: 1 })
  const ac = new AbortController()
  setTimeout(() => ac.abort(), 300)
  const t0 = Date.now()
  collector.start()
  await runSchedule(plan, { url: site.url, requests: gen.autocannonRequests(collector), collector, signal: ac.signal })
  t.ok(Date.now() - t0 < 2000, 'stopped early')
  t.same(collector.stageTimings.map(s => s.name), ['a'], 'later stages skipped')
})
