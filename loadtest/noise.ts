// Is a difference between two runs beyond their own noise? The
// Mann–Whitney U test (Wilcoxon rank-sum) on per-second values, as Go's
// benchstat compares benchmark samples: it asks whether a second of run b
// tends to be higher than a second of run a, from ranks only, so one
// stalled second (a paused VM, a GC, a neighbour's burst — per-second values
// of a load test are heavy-tailed) weighs as one rank, not as its size.
// Exact p-value for small samples without ties; the normal approximation
// with tie and continuity corrections otherwise (an open-model run at a
// fixed rate repeats the same req/s second after second).
// Like any two-sample test it takes the seconds as independent: a drift
// within a run is not modelled, which is why compare.ts also asks for a
// minimum change before it flags one.

export interface RankTest {
  nA: number
  nB: number
  /** U of sample b: the pairs (a second of a, a second of b) where b's is higher, ties counting one half */
  u: number
  /** two-sided p-value */
  p: number
  exact: boolean
}

/** Ranks 1..n of the values of a and b together, tied values sharing their mean rank; also Σ(t³ − t) over the tie groups. */
function ranks (a: readonly number[], b: readonly number[]): { rankSumB: number, ties: number } {
  const all = [...a.map(v => ({ v, b: false })), ...b.map(v => ({ v, b: true }))].sort((x, y) => x.v - y.v)
  let rankSumB = 0
  let ties = 0
  for (let i = 0; i < all.length;) {
    let j = i
    while (j + 1 < all.length && all[j + 1].v === all[i].v) j++
    const rank = (i + j + 2) / 2
    const t = j - i + 1
    if (t > 1) ties += t ** 3 - t
    for (let k = i; k <= j; k++) if (all[k].b) rankSumB += rank
    i = j + 1
  }
  return { rankSumB, ties }
}

/** Exact P(U ≤ u) for samples of nA and nB without ties: the share of rank subsets of b whose U is at most u. */
function exactCdf (nA: number, nB: number, u: number): number {
  // ways[k][s]: subsets of k ranks out of those seen so far with rank sum s
  const n = nA + nB
  const maxSum = (n * (n + 1)) / 2
  let ways: Float64Array[] = Array.from({ length: nB + 1 }, () => new Float64Array(maxSum + 1))
  ways[0][0] = 1
  for (let r = 1; r <= n; r++) {
    const next = ways.map(w => w.slice())
    for (let k = 1; k <= Math.min(r, nB); k++) {
      const prev = ways[k - 1]
      const row = next[k]
      for (let s = r; s <= maxSum; s++) row[s] += prev[s - r]
    }
    ways = next
  }
  const base = (nB * (nB + 1)) / 2
  let below = 0
  let total = 0
  for (let s = base; s <= maxSum; s++) {
    total += ways[nB][s]
    if (s - base <= u + 1e-9) below += ways[nB][s]
  }
  return below / total
}

/** The Mann–Whitney U test of b against a (each with at least one value). */
export function mannWhitney (a: readonly number[], b: readonly number[]): RankTest {
  const nA = a.length
  const nB = b.length
  if (nA < 1 || nB < 1) throw new RangeError('the rank test needs a value in each sample')
  const { rankSumB, ties } = ranks(a, b)
  const u = rankSumB - (nB * (nB + 1)) / 2
  const mu = (nA * nB) / 2
  if (ties === 0 && nA + nB <= 60) {
    // the distribution of U is symmetric about its mean
    const p = Math.min(1, 2 * exactCdf(nA, nB, Math.min(u, nA * nB - u)))
    return { nA, nB, u, p, exact: true }
  }
  const n = nA + nB
  const variance = ((nA * nB) / 12) * ((n + 1) - ties / (n * (n - 1)))
  if (!(variance > 0)) return { nA, nB, u, p: 1, exact: false }
  const z = Math.max(0, Math.abs(u - mu) - 0.5) / Math.sqrt(variance)
  return { nA, nB, u, p: Math.min(1, erfc(z / Math.SQRT2)), exact: false }
}

/** The complementary error function (Numerical Recipes' erfcc, relative error below 1.2e-7). */
export function erfc (x: number): number {
  const z = Math.abs(x)
  const t = 1 / (1 + 0.5 * z)
  const r = t * Math.exp(-z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 +
    t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))))
  return x >= 0 ? r : 2 - r
}
