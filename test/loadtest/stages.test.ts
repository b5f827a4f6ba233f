import t from 'tap'
import { planSchedule, plannedRequests, resolveAmount, runSlice, shareOf, sliceStep, splitAmount } from '../../loadtest/stages.js'
import { BUILTIN_SCENARIOS } from '../../loadtest/scenarios.js'
import { Recorder, epochNow } from '../../loadtest/recorder.js'
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
  t.same(ramp.map(s => s.connections), [50, 50, 50, 50], 'every step may open up to the cap')
  t.same(plan[1].steps.map(s => s.rate), [1000])
  // arrivals are on a clock: a ramp may step more often than once a second
  const fine = planSchedule([{ name: 'r', duration: 3, from: 1, to: 300 }], { duration: 3, model: 'open', target: 300, pool: 30, step: 0.25 })
  t.equal(fine[0].steps.length, 12)
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

t.test('slices add up to the plan exactly: connections and rates split between sources', async t => {
  const two = (i: number) => [{ index: i, count: 2 }]
  t.same([0, 1].map(i => splitAmount(7, two(i))), [4, 3])
  t.same([0, 1, 2].map(i => splitAmount(100, [{ index: i, count: 3 }])), [34, 33, 33])
  // two agents, three workers each: six slices of 1,001 req/s
  const six: number[] = []
  for (let a = 0; a < 2; a++) for (let w = 0; w < 3; w++) six.push(splitAmount(1001, [{ index: a, count: 2 }, { index: w, count: 3 }]))
  t.equal(six.reduce((x, y) => x + y, 0), 1001, 'nested slices add up to the total rate')
  t.same(sliceStep({ connections: 10, rate: 3 }, [{ index: 3, count: 4 }]), null, 'a slice with no rate sits the step out')
  t.same(sliceStep({ connections: 2, rate: 9 }, [{ index: 3, count: 4 }]), { connections: 1, rate: 2 }, 'a slice with a rate gets at least one connection')
  t.same(sliceStep({ connections: 3, rate: null }, [{ index: 2, count: 4 }]), { connections: 1, rate: null })
  const plan = planSchedule([{ name: 'a', duration: 10, to: 100 }], { duration: 10, model: 'open', target: 100, pool: 10, step: 1 })
  t.equal(shareOf(plan, two(0)), 0.5)
  t.equal(shareOf(plan, two(0), 5), 0.25, 'half its share is left half-way through')
  t.equal(plannedRequests(plan, two(1), 5), 250, 'open model: 50 req/s over the last 5 s')
})

t.test('runSlice runs one autocannon instance per step, on the common timeline', async t => {
  const site = await startFakeSite()
  t.teardown(() => site.close())
  let sockets = 0
  site.server.on('connection', () => { sockets++ })
  const plan = planSchedule([
    { name: 'low', duration: 0.6, to: 1 },
    { name: 'high', duration: 0.6, to: 4 }
  ], { duration: 1.2, model: 'closed', target: 4, pool: 4, step: 1 })
  const gen = new RequestGenerator({ scenario: BUILTIN_SCENARIOS.browse, pages: ['/', '/news', '/news/article-1'], base: site.url, seed: 1 })
  const startAt = epochNow() + 300
  const recorder = new Recorder(startAt)
  const seen: Array<[string, number, number, number]> = []
  await runSlice({ url: site.url, plan, slices: [], startAt, source: gen, recorder, onStep: (s, a, b) => seen.push([s.stage, s.connections, a, b]) })
  t.same(seen.map(s => `${s[0]}:${s[1]}`), ['low:1', 'high:4'])
  t.equal(sockets, 5, 'one connection in the first step, four in the second')
  const [low, high] = seen
  t.ok(low[2] >= -0.005 && low[2] < 0.1, `the first step waits for the common start (began at ${low[2].toFixed(3)} s)`)
  t.ok(high[2] >= 0.595 && high[2] < high[3], `the second begins at its planned time, or as soon as the first instance has stopped (${high[2].toFixed(3)} s)`)
  t.ok(high[3] > 1.15 && high[3] < 1.6, `and ends at the planned 1.2 s, not later by the first one's overrun (${high[3].toFixed(3)} s)`)
  const reports = recorder.flush(2, true)
  const byStage = [0, 1].map(i => reports.flatMap(r => r.cells).filter(c => c.stage === i).reduce((n, c) => n + c.data.requests, 0))
  t.ok(byStage[0] > 0 && byStage[1] > 0, `samples attributed to both stages (${byStage})`)
  const served = [...site.gets.values()].reduce((a, b) => a + b, 0)
  t.ok(served - (byStage[0] + byStage[1]) >= 0 && served - (byStage[0] + byStage[1]) <= 5, 'every answered request counted (at most one in flight per connection dropped at each step end)')
})

t.test('a slice of the open model sends its part of the rate', async t => {
  const site = await startFakeSite()
  t.teardown(() => site.close())
  const plan = planSchedule([{ name: 'r', duration: 2, to: 60 }], { duration: 2, model: 'open', target: 60, pool: 6, step: 1 })
  const gen = new RequestGenerator({ scenario: BUILTIN_SCENARIOS.browse, pages: ['/', '/news'], base: site.url, seed: 1 })
  const startAt = epochNow() + 200
  const recorder = new Recorder(startAt)
  await runSlice({ url: site.url, plan, slices: [{ index: 1, count: 3 }], startAt, source: gen, recorder })
  const served = [...site.gets.values()].reduce((a, b) => a + b, 0)
  t.equal(served, 40, '20 req/s for 2 s: its third of the 60 req/s')
})

t.test('an abort signal stops the slice', async t => {
  const site = await startFakeSite()
  t.teardown(() => site.close())
  const plan = planSchedule([{ name: 'a', duration: 5, to: 2 }, { name: 'b', duration: 5, to: 2 }], { duration: 10, model: 'closed', target: 2, pool: 2, step: 1 })
  const gen = new RequestGenerator({ scenario: BUILTIN_SCENARIOS.browse, pages: ['/'], base: site.url, seed: 1 })
  const ac = new AbortController()
  setTimeout(() => ac.abort(), 300)
  const t0 = Date.now()
  const startAt = epochNow()
  const steps: string[] = []
  await runSlice({ url: site.url, plan, slices: [], startAt, source: gen, recorder: new Recorder(startAt), signal: ac.signal, onStep: s => steps.push(s.stage) })
  t.ok(Date.now() - t0 < 2000, 'stopped early')
  t.same(steps, ['a'], 'later stages skipped')
})
