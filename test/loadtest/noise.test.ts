import t from 'tap'
import { erfc, mannWhitney } from '../../loadtest/noise.js'

t.test('Mann–Whitney U: exact p-values of small samples', async t => {
  // R's ?wilcox.test example (Hollander & Wolfe): W = 35, one-sided p = 0.1272
  const x = [0.80, 0.83, 1.89, 1.04, 1.45, 1.38, 1.91, 1.64, 0.73, 1.46]
  const y = [1.15, 0.88, 0.90, 0.74, 1.21]
  const r = mannWhitney(y, x)
  t.equal(r.u, 35)
  t.equal(r.exact, true)
  t.ok(Math.abs(r.p - 2 * 0.1272) < 5e-4, `two-sided p ${r.p}`)
  t.equal(mannWhitney(x, y).p, r.p, 'symmetric')
  // complete separation: 2 / C(n, k)
  t.ok(Math.abs(mannWhitney([1, 2, 3], [4, 5, 6]).p - 2 / 20) < 1e-12, 'three seconds each can never reach 1 %')
  t.ok(Math.abs(mannWhitney([1, 2, 3, 4, 5], [6, 7, 8, 9, 10]).p - 2 / 252) < 1e-12)
  t.ok(Math.abs(mannWhitney([1, 2, 3, 4, 5, 6, 7], [8, 9, 10, 11, 12, 13, 14]).p - 2 / 3432) < 1e-12)
  t.equal(mannWhitney([1, 2, 3, 4, 5, 6, 7], [8, 9, 10, 11, 12, 13, 14]).u, 49)
  // ranks only: how far a stalled second strays does not matter, only where it ranks
  const slow = [200, 201, 202, 200, 199, 201, 203]
  const stalled = mannWhitney([10, 11, 10, 12, 11, 10, 150], slow)
  t.equal(stalled.p, mannWhitney([10, 11, 10, 12, 11, 10, 13], slow).p)
  t.ok(stalled.p < 0.01, `p ${stalled.p}`)
})

t.test('Mann–Whitney U: ties and larger samples by the normal approximation', async t => {
  const same = mannWhitney([20, 20, 20, 20], [20, 20, 20, 20])
  t.equal(same.p, 1, 'the same rate every second: no difference')
  t.equal(same.exact, false)
  const shifted = mannWhitney(Array(30).fill(20), Array(30).fill(21))
  t.ok(shifted.p < 1e-10, `every second of b above a: p ${shifted.p}`)
  const mixed = mannWhitney([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
  t.ok(mixed.p > 0.9, `identical samples: p ${mixed.p}`)
  t.ok(Math.abs(erfc(0) - 1) < 1e-7)
  t.ok(Math.abs(erfc(1.959964 / Math.SQRT2) - 0.05) < 1e-6, 'two-sided 5 % at z = 1.96')
  t.ok(Math.abs(erfc(-1) - 1.8427007929) < 1e-6)
  t.throws(() => mannWhitney([], [1]), /a value in each sample/)
})
