import t from 'tap'
import { parseTier, planCapacity } from '../../loadtest/capacity.js'
import { emptyStats, type Summary } from '../../loadtest/report-json.js'

function summary (o: { rps: number, duration: number, requests: number, writes: number, origin: number, hitRatio: number | null }): Summary {
  const stats = { ...emptyStats(), requests: o.requests, duration: o.duration, rps: o.rps, writes: o.writes, reads: o.requests - o.writes, originRequests: o.origin, originPerRequest: o.origin / o.requests }
  stats.cache = { ...stats.cache, hitRatio: o.hitRatio }
  return {
    stages: [
      { name: 'ramp', stats: { ...stats, rps: o.rps / 2, requests: o.requests / 4 } },
      { name: 'hold', stats }
    ],
    totals: stats,
    duration: o.duration
  } as unknown as Summary
}

t.test('through the cache: caches from throughput, frontends from the origin share', async t => {
  const s = summary({ rps: 5000, duration: 10, requests: 50_000, writes: 1000, origin: 2500, hitRatio: 0.97 })
  const p = planCapacity(s, { users: 100_000, thinkTime: 10, headroom: 0.5, tier: { cache: 1, frontend: 2, backend: 1 }, frontendRps: 400, scenarioWriteShare: 0.1 })
  t.equal(p.requestRate, 10_000, 'R = users / think time')
  t.equal(p.cache.perNodeRps, 5000)
  t.equal(p.cache.instances, 4, 'ceil(10000 / (5000 × 0.5))')
  t.equal(p.originShare, 0.05)
  t.equal(p.frontend.neededRps, 500)
  t.equal(p.frontend.instances, 3, 'ceil(500 / (400 × 0.5))')
  t.match(p.frontend.basis, /given/)
  t.equal(p.writeShare, 0.02, 'measured write share wins over the scenario\'s')
  t.equal(p.backend.neededRps, 200)
  t.equal(p.backend.perNodeRps, 100, '1000 writes over 10 s on one backend')
  t.equal(p.backend.instances, 4)
  t.ok(p.model.length >= 4 && p.assumptions.length >= 5, 'states its model and assumptions')
  t.match(p.model.join('\n'), /R = users \/ think time = 100000 \/ 10 s/)
})

t.test('straight at a frontend: frontends measured, caches not', async t => {
  const s = summary({ rps: 800, duration: 10, requests: 8000, writes: 0, origin: 8000, hitRatio: null })
  const p = planCapacity(s, { users: 10_000, thinkTime: 5, headroom: 0.7, tier: { cache: 0, frontend: 1, backend: 1 }, scenarioWriteShare: 0 })
  t.equal(p.cache.instances, null)
  t.match(p.cache.basis, /not measured/)
  t.equal(p.frontend.perNodeRps, 800)
  t.equal(p.frontend.instances, 4, 'ceil(2000 / (800 × 0.7))')
  t.equal(p.backend.instances, 1, 'no writes: one backend')
})

t.test('parseTier', async t => {
  t.same(parseTier('cache=2,frontend=4'), { cache: 2, frontend: 4, backend: 1 })
  t.same(parseTier(''), { cache: 1, frontend: 1, backend: 1 })
  t.throws(() => parseTier('db=3'), /bad --tier/)
  t.throws(() => parseTier('frontend=0'), /must be >= 1/)
})
