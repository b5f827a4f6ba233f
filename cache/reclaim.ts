/**
 * Returning evicted bytes to the system promptly (design §2.7: memory bounded
 * by configuration under any flood).
 *
 * Stored bodies live outside the V8 heap. When the LRU evicts them they are
 * garbage, but V8 only runs a full collection for external memory after about
 * 64 MB more of it has been allocated — so a small cache under a miss flood
 * would hold up to that much dead data beyond its limit. After every
 * `thresholdBytes` of evictions we ask for a full collection ourselves
 * (at most once per `minIntervalMs`), which keeps the overshoot near the
 * threshold. A collection of our small heap takes a few milliseconds.
 */
import v8 from 'node:v8'
import vm from 'node:vm'

type Gc = () => void

let cached: Gc | null | undefined
function gcFunction (): Gc | null {
  if (cached !== undefined) return cached
  const existing = (globalThis as { gc?: Gc }).gc
  if (existing) return (cached = existing)
  try {
    // Exposes gc() to a fresh context only; the flag stays off for everything else.
    v8.setFlagsFromString('--expose-gc')
    cached = vm.runInNewContext('gc') as Gc
  } catch {
    cached = null
  }
  return cached
}

export class Reclaimer {
  readonly #threshold: number
  readonly #minIntervalMs: number
  #pending = 0
  #last = 0
  #scheduled = false
  collections = 0

  constructor (options: { thresholdBytes: number, minIntervalMs?: number }) {
    this.#threshold = options.thresholdBytes
    this.#minIntervalMs = options.minIntervalMs ?? 100
  }

  /** Called with the size of each evicted object. */
  evicted (bytes: number): void {
    this.#pending += bytes
    if (this.#pending < this.#threshold || this.#scheduled) return
    const wait = Math.max(0, this.#last + this.#minIntervalMs - Date.now())
    this.#scheduled = true
    const run = () => {
      this.#scheduled = false
      this.#pending = 0
      this.#last = Date.now()
      const gc = gcFunction()
      if (gc) { gc(); this.collections++ }
    }
    if (wait === 0) setImmediate(run)
    else setTimeout(run, wait).unref()
  }
}
