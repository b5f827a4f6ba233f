// Is a difference between two runs beyond their own noise? Welch's t-test
// on per-second values (two samples, unequal variances), with each sample's
// size cut to its effective size under lag-1 autocorrelation: seconds of a
// load test are not independent (a slow second is often followed by another),
// and counting them as independent would call drift significant.
//   n_eff = n · (1 − ρ₁) / (1 + ρ₁), ρ₁ ≥ 0 the lag-1 autocorrelation
//   t = (mean_b − mean_a) / √(s_a²/n_eff,a + s_b²/n_eff,b)
//   df by Welch–Satterthwaite over the effective sizes; p two-sided from Student's t.

export interface WelchResult {
  meanA: number
  meanB: number
  /** samples (seconds) and their effective sizes */
  nA: number
  nB: number
  effA: number
  effB: number
  t: number
  df: number
  /** two-sided p-value; 1 when the means are equal, 0 when both samples are constant and differ */
  p: number
}

export function mean (xs: readonly number[]): number {
  let s = 0
  for (const x of xs) s += x
  return xs.length > 0 ? s / xs.length : NaN
}

/** Sample variance (n − 1). */
export function variance (xs: readonly number[]): number {
  const m = mean(xs)
  let s = 0
  for (const x of xs) s += (x - m) ** 2
  return xs.length > 1 ? s / (xs.length - 1) : 0
}

/** Lag-1 autocorrelation, 0 for a constant or too short series. */
export function lag1 (xs: readonly number[]): number {
  if (xs.length < 3) return 0
  const m = mean(xs)
  let num = 0
  let den = 0
  for (let i = 0; i < xs.length; i++) {
    den += (xs[i] - m) ** 2
    if (i > 0) num += (xs[i] - m) * (xs[i - 1] - m)
  }
  return den > 0 ? num / den : 0
}

/** Effective sample size of a series under its lag-1 autocorrelation (negative correlation is not credited), at least 2 when n is. */
export function effectiveSize (xs: readonly number[]): number {
  const n = xs.length
  if (n < 2) return n
  const r = Math.min(Math.max(lag1(xs), 0), 0.95)
  return Math.max(2, (n * (1 - r)) / (1 + r))
}

/** Welch's t-test of b against a (both with at least two values). */
export function welch (a: readonly number[], b: readonly number[]): WelchResult {
  if (a.length < 2 || b.length < 2) throw new RangeError('Welch\'s t-test needs two values or more in each sample')
  const meanA = mean(a)
  const meanB = mean(b)
  const effA = effectiveSize(a)
  const effB = effectiveSize(b)
  const va = variance(a) / effA
  const vb = variance(b) / effB
  const se = Math.sqrt(va + vb)
  const diff = meanB - meanA
  if (se === 0) {
    return { meanA, meanB, nA: a.length, nB: b.length, effA, effB, t: diff === 0 ? 0 : Math.sign(diff) * Infinity, df: effA + effB - 2, p: diff === 0 ? 1 : 0 }
  }
  const t = diff / se
  const df = (va + vb) ** 2 / ((va * va) / (effA - 1) + (vb * vb) / (effB - 1))
  return { meanA, meanB, nA: a.length, nB: b.length, effA, effB, t, df, p: studentTwoSided(t, df) }
}

/** P(|T| ≥ |t|) for Student's t with df degrees of freedom. */
export function studentTwoSided (t: number, df: number): number {
  if (!Number.isFinite(t)) return 0
  return regularizedBeta(df / (df + t * t), df / 2, 0.5)
}

/** ln Γ(x), Lanczos approximation (g = 7, n = 9), x > 0. */
function lnGamma (x: number): number {
  const c = [0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313, -176.61502916214059,
    12.507343278686905, -0.13857109526572012, 9.9843695780195716e-6, 1.5056327351493116e-7]
  if (x < 0.5) return Math.log(Math.PI / Math.sin(Math.PI * x)) - lnGamma(1 - x)
  x -= 1
  let a = c[0]
  const t = x + 7.5
  for (let i = 1; i < 9; i++) a += c[i] / (x + i)
  return 0.5 * Math.log(2 * Math.PI) + (x + 0.5) * Math.log(t) - t + Math.log(a)
}

/** I_x(a, b), the regularized incomplete beta function (continued fraction, modified Lentz). */
export function regularizedBeta (x: number, a: number, b: number): number {
  if (x <= 0) return 0
  if (x >= 1) return 1
  const front = Math.exp(lnGamma(a + b) - lnGamma(a) - lnGamma(b) + a * Math.log(x) + b * Math.log(1 - x))
  // the continued fraction converges fast for x below (a + 1) / (a + b + 2); use the symmetry otherwise
  if (x > (a + 1) / (a + b + 2)) return 1 - regularizedBeta(1 - x, b, a)
  const TINY = 1e-300
  let c = 1
  let d = 1 - ((a + b) * x) / (a + 1)
  if (Math.abs(d) < TINY) d = TINY
  d = 1 / d
  let f = d
  for (let m = 1; m <= 300; m++) {
    const m2 = 2 * m
    let num = (m * (b - m) * x) / ((a + m2 - 1) * (a + m2))
    d = 1 + num * d
    if (Math.abs(d) < TINY) d = TINY
    c = 1 + num / c
    if (Math.abs(c) < TINY) c = TINY
    d = 1 / d
    f *= d * c
    num = (-(a + m) * (a + b + m) * x) / ((a + m2) * (a + m2 + 1))
    d = 1 + num * d
    if (Math.abs(d) < TINY) d = TINY
    c = 1 + num / c
    if (Math.abs(c) < TINY) c = TINY
    d = 1 / d
    const delta = d * c
    f *= delta
    if (Math.abs(delta - 1) < 1e-12) break
  }
  return (front * f) / a
}
