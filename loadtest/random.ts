// Seedable pseudo-random numbers and weighted choice. Load tests must be
// reproducible: the same seed gives the same URL sequence, so two runs (say,
// through the cache and straight at a frontend) see the same traffic.
import { mulberry32 } from '../common/random.js'

export type Rng = () => number

/** Seeded picks (mulberry32); seed 0 is replaced so it still yields a lively sequence. */
export function createRng (seed: number): Rng {
  return mulberry32((seed >>> 0) || 0x9e3779b9)
}

/** Picks index i with probability weights[i] / sum(weights), in O(log n). */
export class WeightedSampler {
  readonly #cdf: Float64Array
  readonly #rng: Rng

  constructor (weights: readonly number[], rng: Rng) {
    if (weights.length === 0) throw new RangeError('WeightedSampler needs at least one weight')
    const cdf = new Float64Array(weights.length)
    let sum = 0
    for (let i = 0; i < weights.length; i++) {
      const w = weights[i]
      if (!Number.isFinite(w) || w < 0) throw new RangeError(`weight ${i} must be a finite number >= 0, got ${w}`)
      sum += w
      cdf[i] = sum
    }
    if (sum <= 0) throw new RangeError('weights must not all be zero')
    for (let i = 0; i < cdf.length; i++) cdf[i] /= sum
    cdf[cdf.length - 1] = 1
    this.#cdf = cdf
    this.#rng = rng
  }

  get size (): number { return this.#cdf.length }

  /** Probability of index i. */
  probability (i: number): number {
    return this.#cdf[i] - (i === 0 ? 0 : this.#cdf[i - 1])
  }

  next (): number {
    const u = this.#rng()
    let lo = 0
    let hi = this.#cdf.length - 1
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if (u < this.#cdf[mid]) hi = mid
      else lo = mid + 1
    }
    return lo
  }
}
