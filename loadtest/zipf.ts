// Zipf popularity: the page of rank k (1-based) is requested with probability
// proportional to 1 / k^s. With s ≈ 1 a few pages (home, news index) take most
// of the traffic and a long tail of articles and tutorials gets the rest,
// which is what web traffic and a campaign landing look like.
import { createRng, WeightedSampler, type Rng } from './random.js'

export const DEFAULT_ZIPF_EXPONENT = 1

/** Unnormalised Zipf weights 1/k^s for ranks 1..n. */
export function zipfWeights (n: number, s: number = DEFAULT_ZIPF_EXPONENT): number[] {
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`zipf: n must be an integer >= 1, got ${n}`)
  if (!Number.isFinite(s) || s < 0) throw new RangeError(`zipf: exponent s must be a finite number >= 0, got ${s}`)
  const w = new Array<number>(n)
  for (let k = 1; k <= n; k++) w[k - 1] = 1 / Math.pow(k, s)
  return w
}

/** Deterministic Zipf sampler over ranks 0..n-1 (0 is the most popular). */
export class ZipfSampler {
  readonly n: number
  readonly s: number
  readonly #sampler: WeightedSampler

  constructor (n: number, options: { s?: number, seed?: number, rng?: Rng } = {}) {
    this.n = n
    this.s = options.s ?? DEFAULT_ZIPF_EXPONENT
    this.#sampler = new WeightedSampler(zipfWeights(n, this.s), options.rng ?? createRng(options.seed ?? 1))
  }

  /** Probability of rank i (0-based). */
  probability (i: number): number { return this.#sampler.probability(i) }

  /** Next rank, 0-based. */
  next (): number { return this.#sampler.next() }
}
