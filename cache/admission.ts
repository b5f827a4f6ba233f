/**
 * Admission to the object store: TinyLFU (Einziger, Friedman & Manes,
 * "TinyLFU: A Highly Efficient Cache Admission Policy", 2017; the policy
 * behind Caffeine and Ristretto).
 *
 * A plain LRU admits everything, so one client requesting thousands of
 * unique URLs (`?v=1`, `?v=2`, …) pushes every popular page out (issue 10:
 * 18,872 unique URLs in 25 s evicted all 60 hot articles). TinyLFU keeps an
 * approximate count of recent reads per key and lets a new object in only
 * when it is read more often than the objects it would push out; a one-hit
 * wonder never displaces a page many visitors read.
 *
 * The counts live in a count-min sketch of 4-bit counters (four rows, the
 * estimate is the smallest of the four), packed eight to a 32-bit word. After
 * `sampleSize` increments every counter is halved, so the counts describe
 * recent popularity and a page that stopped being read ages out. Recording a
 * read is O(1) and allocates nothing: the key's hash is computed once, when
 * the object is stored, and kept on the object.
 */

/** Seeded 32-bit FNV-1a over UTF-16 code units, then the murmur3 finalizer. */
function hashString (s: string, seed: number): number {
  let h = (0x811c9dc5 ^ seed) >>> 0
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i)
    h = Math.imul(h, 0x01000193)
  }
  return mix(h)
}

function mix (x: number): number {
  x ^= x >>> 16
  x = Math.imul(x, 0x85ebca6b)
  x ^= x >>> 13
  x = Math.imul(x, 0xc2b2ae35)
  x ^= x >>> 16
  return x >>> 0
}

function nextPowerOfTwo (n: number): number {
  let p = 1
  while (p < n) p *= 2
  return p
}

export interface SketchOptions {
  /** How many objects the store is expected to hold (from its byte budget). */
  expectedItems: number
  /** Hash seed; random by default, so nobody can aim collisions at a page from outside. */
  seed?: number
}

export class FrequencySketch {
  readonly #table: Uint32Array
  /** Counters per row minus one (a power of two). */
  readonly #mask: number
  readonly #width: number
  readonly #seed: number
  readonly sampleSize: number
  #additions = 0

  /**
   * Four counters per expected item per row keep the noise of a flood of
   * unique keys small (as Caffeine sizes its sketch); the sample is ten
   * reads per expected item before the counts are halved.
   */
  constructor (options: SketchOptions) {
    const items = nextPowerOfTwo(Math.max(16, Math.ceil(options.expectedItems)))
    this.#width = 4 * items
    this.#mask = this.#width - 1
    this.#table = new Uint32Array((4 * this.#width) / 8)
    this.#seed = options.seed ?? ((Math.random() * 0x100000000) >>> 0)
    this.sampleSize = 10 * items
  }

  /** Bytes the counters take. */
  get bytes (): number { return this.#table.byteLength }

  /** The key's hash (compute once per key; `increment` and `frequency` take it). */
  hash (key: string): number { return hashString(key, this.#seed) }

  /** Records one read. */
  increment (h: number): void {
    const step = mix(h ^ 0x9e3779b9) | 1
    let added = false
    for (let row = 0; row < 4; row++) {
      const p = row * this.#width + ((h + Math.imul(row, step)) & this.#mask)
      const word = p >>> 3
      const shift = (p & 7) << 2
      if (((this.#table[word] >>> shift) & 15) !== 15) {
        this.#table[word] += 1 << shift
        added = true
      }
    }
    if (added && ++this.#additions >= this.sampleSize) this.#halve()
  }

  /** The estimated number of recent reads (0–15). */
  frequency (h: number): number {
    const step = mix(h ^ 0x9e3779b9) | 1
    let min = 15
    for (let row = 0; row < 4; row++) {
      const p = row * this.#width + ((h + Math.imul(row, step)) & this.#mask)
      const v = (this.#table[p >>> 3] >>> ((p & 7) << 2)) & 15
      if (v < min) min = v
    }
    return min
  }

  /** Ages every count: halves each 4-bit counter in place. */
  #halve (): void {
    const t = this.#table
    for (let i = 0; i < t.length; i++) t[i] = (t[i] >>> 1) & 0x77777777
    this.#additions = this.#additions >>> 1
  }
}
