/**
 * Request bodies of passed requests. The cache reads a body whole before it
 * forwards it (nothing half-framed ever goes upstream, and an idempotent
 * request can be retried on another upstream), so bodies sit in memory
 * outside the object store: 300 concurrent 1 MiB POSTs took a 16 MiB cache
 * to 721 MiB (issue 10). Each body is bounded (CACHE_MAX_BODY_BYTES, 413),
 * and so is their sum per worker (CACHE_MAX_INFLIGHT_BODY_BYTES, design
 * §2.7): a body that would go beyond is answered 503 with Retry-After
 * (RFC 9110 §15.6.4: a temporary overload) and is not read further; a
 * declared length is taken whole before a byte is read.
 */
import type { IncomingMessage } from 'node:http'

/** Bytes of request bodies held across all requests of this worker. */
export class BodyBudget {
  readonly max: number
  #used = 0
  readonly #onGiven: (bytes: number) => void
  /** `onGiven`: bytes given back are garbage now (app.ts hands them to the reclaimer, reclaim.ts). */
  constructor (max: number, onGiven: (bytes: number) => void = () => {}) { this.max = max; this.#onGiven = onGiven }
  get inflight (): number { return this.#used }
  /** Takes `n` bytes if they fit. */
  take (n: number): boolean {
    if (this.#used + n > this.max) return false
    this.#used += n
    return true
  }

  give (n: number): void {
    this.#used -= n
    if (n > 0) this.#onGiven(n)
  }
  /** Counts `n` bytes already in memory, whether they fit or not (`inflight` may then pass `max`). */
  charge (n: number): void { this.#used += n }
}

export type BodyRead =
  | { kind: 'none' }
  /** `release` gives the body's bytes back to the budget: call it once the upstream has the body. */
  | { kind: 'body', body: Buffer, release: () => void }
  | { kind: 'too-large' }
  | { kind: 'busy' }
  /** The stream broke before its end (bad chunking, client gone). */
  | { kind: 'malformed' }

export function readRequestBody (req: IncomingMessage, maxBytes: number, budget: BodyBudget): Promise<BodyRead> {
  const cl = req.headers['content-length']
  const declared = cl !== undefined ? Number(cl) : undefined
  if (declared !== undefined && declared > maxBytes) return Promise.resolve({ kind: 'too-large' })
  if (req.headers['transfer-encoding'] === undefined && !(declared !== undefined && declared > 0)) return Promise.resolve({ kind: 'none' })
  let reserved = 0
  if (declared !== undefined) {
    if (!budget.take(declared)) return Promise.resolve({ kind: 'busy' })
    reserved = declared
  }
  return new Promise((resolve) => {
    const chunks: Buffer[] = []
    let size = 0
    let settled = false
    const finish = (r: BodyRead): void => {
      if (settled) return
      settled = true
      req.off('data', onData)
      req.off('end', onEnd)
      req.off('error', onBroken)
      req.off('close', onBroken)
      if (r.kind !== 'body') { budget.give(reserved); reserved = 0 }
      resolve(r)
    }
    // A declared length is read straight into one buffer of that size: the
    // budget counts what is held, and chunks plus a joined copy would hold
    // twice that until collected (issue 23: count bodies being read).
    const whole = declared !== undefined ? Buffer.allocUnsafeSlow(declared) : undefined
    const onData = (c: Buffer): void => {
      if (whole !== undefined) {
        // node's parser never hands over more than Content-Length says.
        c.copy(whole, size)
        size += c.length
        return
      }
      size += c.length
      if (size > maxBytes) { req.pause(); finish({ kind: 'too-large' }); return }
      // Unknown length (chunked): taken as it arrives.
      if (!budget.take(c.length)) { req.pause(); finish({ kind: 'busy' }); return }
      reserved += c.length
      chunks.push(c)
    }
    const onEnd = (): void => {
      const body = whole !== undefined ? whole.subarray(0, size) : chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, size)
      let held = reserved
      finish({ kind: 'body', body, release: () => { budget.give(held); held = 0 } })
    }
    // A stream destroyed before its end (client gone, parser error) never emits 'end'.
    const onBroken = (): void => { finish({ kind: 'malformed' }) }
    req.on('data', onData)
    req.on('end', onEnd)
    req.on('error', onBroken)
    req.on('close', onBroken)
  })
}
