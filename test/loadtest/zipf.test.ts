import t from 'tap'
import { ZipfSampler, zipfWeights } from '../../loadtest/zipf.js'
import { createRng, WeightedSampler } from '../../loadtest/random.js'

t.test('weights follow 1/k^s', async t => {
  t.same(zipfWeights(4, 1), [1, 1 / 2, 1 / 3, 1 / 4])
  t.same(zipfWeights(3, 2), [1, 1 / 4, 1 / 9])
  t.same(zipfWeights(3, 0), [1, 1, 1], 's = 0 is uniform')
  t.throws(() => zipfWeights(0), /n must be an integer >= 1/)
  t.throws(() => zipfWeights(3, -1), /exponent/)
})

t.test('probabilities are normalised Zipf', async t => {
  const z = new ZipfSampler(100, { s: 1, seed: 7 })
  let sum = 0
  for (let i = 0; i < 100; i++) sum += z.probability(i)
  t.ok(Math.abs(sum - 1) < 1e-9, 'sum to 1')
  const h100 = zipfWeights(100).reduce((a, b) => a + b, 0)
  t.ok(Math.abs(z.probability(0) - 1 / h100) < 1e-12, 'rank 1 gets 1/H(n)')
  t.ok(Math.abs(z.probability(0) / z.probability(1) - 2) < 1e-9, 'rank 1 twice rank 2')
  t.ok(Math.abs(z.probability(0) / z.probability(9) - 10) < 1e-9, 'rank 1 ten times rank 10')
})

t.test('same seed, same sequence; another seed, another sequence', async t => {
  const a = new ZipfSampler(50, { seed: 42 })
  const b = new ZipfSampler(50, { seed: 42 })
  const c = new ZipfSampler(50, { seed: 43 })
  const sa = Array.from({ length: 200 }, () => a.next())
  const sb = Array.from({ length: 200 }, () => b.next())
  const sc = Array.from({ length: 200 }, () => c.next())
  t.same(sa, sb)
  t.not(sa.join(), sc.join())
  t.ok(sa.every(x => Number.isInteger(x) && x >= 0 && x < 50), 'ranks in range')
})

t.test('empirical frequencies match the distribution (a few pages dominate, long tail)', async t => {
  const n = 200
  const z = new ZipfSampler(n, { s: 1, seed: 3 })
  const draws = 200_000
  const counts = new Array<number>(n).fill(0)
  for (let i = 0; i < draws; i++) counts[z.next()]++
  for (const k of [0, 1, 2, 9, 49]) {
    const expected = z.probability(k) * draws
    const sd = Math.sqrt(expected * (1 - z.probability(k)))
    t.ok(Math.abs(counts[k] - expected) < 5 * sd, `rank ${k + 1}: ${counts[k]} ≈ ${expected.toFixed(0)}`)
  }
  const top5 = counts.slice(0, 5).reduce((a, b) => a + b, 0) / draws
  t.ok(top5 > 0.35 && top5 < 0.45, `top 5 of 200 pages take ~39% of requests (${(top5 * 100).toFixed(1)}%)`)
  t.ok(counts.slice(100).every(c => c > 0), 'the tail is still visited')
})

t.test('WeightedSampler validates and picks by weight', async t => {
  t.throws(() => new WeightedSampler([], createRng(1)), /at least one/)
  t.throws(() => new WeightedSampler([0, 0], createRng(1)), /all be zero/)
  t.throws(() => new WeightedSampler([1, -1], createRng(1)), />= 0/)
  const w = new WeightedSampler([90, 0, 10], createRng(5))
  const counts = [0, 0, 0]
  for (let i = 0; i < 20_000; i++) counts[w.next()]++
  t.equal(counts[1], 0, 'zero weight never picked')
  t.ok(counts[2] > 1700 && counts[2] < 2300, `10% share: ${counts[2]}`)
})
