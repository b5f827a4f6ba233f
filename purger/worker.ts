/**
 * The purger's loops: one intake loop (outbox → jobs, purge-queue), and one
 * delivery loop per CDN, so a CDN that is down or slow never holds up
 * another. A delivery round claims the due jobs of its CDN, merges their
 * keys (a crowd of writes to one page is one purge), sends them in batches
 * of the provider's limit, paced under its rate limit, and records per job:
 * done when every key was acknowledged, otherwise back in the queue with the
 * keys still to purge, after the CDN's Retry-After or an exponential
 * back-off with jitter (as the mailer does).
 */
import { createHash } from 'node:crypto'
import { PurgeFailure, type CdnAdapter, type PurgeAck } from './adapter.js'
import type { PurgeJob, PurgeQueue } from './queue.js'

export interface PurgerEvents {
  /** One request to a CDN: acknowledged, refused for the rate (429), or failed otherwise. */
  request? (cdn: string, outcome: 'ok' | 'rate-limited' | 'failed', ack?: PurgeAck): void
  /** Jobs acknowledged, each with its lag from commit to acknowledgement. */
  done? (cdn: string, lagsSeconds: number[], keys: number): void
  retry? (cdn: string, jobs: number, delayMs: number, error: string): void
  error? (err: unknown, what: string): void
}

export interface PurgerOptions {
  queue: PurgeQueue
  adapters: CdnAdapter[]
  pollMs: number
  batchMax: number
  leaseMs: number
  retryBaseMs: number
  retryMaxMs: number
  retainDoneMs: number
  events?: PurgerEvents
  random?: () => number
  now?: () => number
}

interface CdnState {
  adapter: CdnAdapter
  /** Earliest time of this CDN's next request (pacing, Retry-After). */
  nextSlot: number
  wake: (() => void) | undefined
  /** Every request has failed since this time (undefined while the CDN answers). */
  downSince: number | undefined
  lastError: string | undefined
}

export class Purger {
  readonly #o: PurgerOptions & { random: () => number, now: () => number }
  readonly #cdns: CdnState[]
  #stopped = true
  #loops: Array<Promise<void>> = []
  #intakeWake: (() => void) | undefined
  #lastCleanup = 0

  constructor (options: PurgerOptions) {
    this.#o = { random: Math.random, now: Date.now, ...options }
    this.#cdns = options.adapters.map((adapter) => ({ adapter, nextSlot: 0, wake: undefined, downSince: undefined, lastError: undefined }))
  }

  get cdns (): string[] { return this.#cdns.map((c) => c.adapter.cdn) }

  /** Per CDN: since when every request failed, and the last error. */
  status (): Record<string, { unreachableSince?: string, lastError?: string }> {
    const out: Record<string, { unreachableSince?: string, lastError?: string }> = {}
    for (const c of this.#cdns) out[c.adapter.cdn] = c.downSince === undefined ? {} : { unreachableSince: new Date(c.downSince).toISOString(), lastError: c.lastError }
    return out
  }

  /** Back-off before attempt `attempts + 1`: doubling from the base, capped, half of it random. */
  backoff (attempts: number): number {
    const exp = Math.min(this.#o.retryMaxMs, this.#o.retryBaseMs * 2 ** Math.min(30, Math.max(0, attempts - 1)))
    return Math.round(exp / 2 + this.#o.random() * exp / 2)
  }

  start (): void {
    if (!this.#stopped) return
    this.#stopped = false
    this.#loops = [this.#intakeLoop(), ...this.#cdns.map((c) => this.#deliveryLoop(c))]
  }

  /** Stops the loops after the rounds in flight (bounded by `timeoutMs`); unacknowledged jobs stay queued. */
  async stop (timeoutMs = 5000): Promise<void> {
    this.#stopped = true
    this.#intakeWake?.()
    for (const c of this.#cdns) c.wake?.()
    let timer: NodeJS.Timeout | undefined
    await Promise.race([Promise.all(this.#loops), new Promise((resolve) => { timer = setTimeout(resolve, timeoutMs) })])
    clearTimeout(timer)
  }

  #sleep (ms: number, setWake: (wake: (() => void) | undefined) => void): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms)
      function done () { clearTimeout(timer); setWake(undefined); resolve() }
      setWake(done)
    })
  }

  async #intakeLoop (): Promise<void> {
    while (!this.#stopped) {
      let took = 0
      try {
        took = await this.intakeOnce()
      } catch (err) {
        this.#o.events?.error?.(err, 'intake')
      }
      if (took > 0) for (const c of this.#cdns) c.wake?.()
      if (this.#stopped) break
      if (took === 0) await this.#sleep(this.#o.pollMs, (w) => { this.#intakeWake = w })
    }
  }

  async #deliveryLoop (c: CdnState): Promise<void> {
    while (!this.#stopped) {
      let sent = 0
      try {
        sent = await this.deliverOnce(c.adapter.cdn)
      } catch (err) {
        this.#o.events?.error?.(err, `${c.adapter.cdn} round`)
      }
      if (this.#stopped) break
      if (sent === 0) await this.#sleep(this.#o.pollMs, (w) => { c.wake = w })
    }
  }

  /** One intake pass (and, once a minute, the removal of old acknowledged jobs); returns the outbox rows taken. */
  async intakeOnce (): Promise<number> {
    const took = await this.#o.queue.intake(this.cdns)
    const now = this.#o.now()
    if (now - this.#lastCleanup > 60_000) {
      this.#lastCleanup = now
      await this.#o.queue.cleanup(this.#o.retainDoneMs)
    }
    return took
  }

  async #pace (c: CdnState): Promise<void> {
    const now = this.#o.now()
    const wait = c.nextSlot - now
    c.nextSlot = Math.max(now, c.nextSlot) + c.adapter.minIntervalMs
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait))
  }

  /** One delivery round for `cdn`; returns the jobs claimed (0: nothing was due). */
  async deliverOnce (cdn: string): Promise<number> {
    const c = this.#cdns.find((x) => x.adapter.cdn === cdn)
    if (c === undefined) throw new TypeError(`no adapter for ${cdn}`)
    // Nothing is claimed while the CDN asked us to wait: the lease would run out meanwhile.
    if (c.nextSlot - this.#o.now() > this.#o.leaseMs / 2) return 0
    const jobs = await this.#o.queue.claim(cdn, this.#o.batchMax, this.#o.leaseMs)
    if (jobs.length === 0) return 0
    const keys = [...new Set(jobs.flatMap((j) => j.keys))]
    const acked = new Set<string>()
    let failure: PurgeFailure | undefined
    for (let i = 0; i < keys.length; i += c.adapter.maxKeysPerRequest) {
      const batch = keys.slice(i, i + c.adapter.maxKeysPerRequest)
      await this.#pace(c)
      try {
        const ack = await c.adapter.purge(batch, reference(cdn, jobs, batch))
        for (const k of batch) acked.add(k)
        c.downSince = undefined
        this.#o.events?.request?.(cdn, 'ok', ack)
      } catch (err) {
        failure = err instanceof PurgeFailure ? err : new PurgeFailure((err as Error).message)
        for (const k of failure.acknowledged) acked.add(k)
        this.#o.events?.request?.(cdn, failure.status === 429 ? 'rate-limited' : 'failed')
        // The CDN's own word on when to come back holds every request to it, not just this batch.
        if (failure.retryAfterMs !== undefined) c.nextSlot = Math.max(c.nextSlot, this.#o.now() + Math.min(failure.retryAfterMs, this.#o.retryMaxMs))
        if (failure.status === undefined || failure.status >= 500) { c.downSince ??= this.#o.now() }
        c.lastError = failure.message
        // The rest waits: a CDN that refuses one batch would refuse the next.
        break
      }
    }
    const finished = jobs.filter((j) => j.keys.every((k) => acked.has(k)))
    const lags = await this.#o.queue.done(finished)
    if (lags.length > 0) this.#o.events?.done?.(cdn, lags.map((l) => l.lagSeconds), keys.length)
    const left = jobs.filter((j) => !finished.includes(j))
    if (left.length > 0) {
      const message = failure?.message ?? 'not acknowledged'
      let delay = 0
      for (const job of left) {
        delay = failure?.retryAfterMs !== undefined ? Math.min(failure.retryAfterMs, this.#o.retryMaxMs) : this.backoff(job.attempts)
        await this.#o.queue.retry(job, job.keys.filter((k) => !acked.has(k)), delay, message)
      }
      this.#o.events?.retry?.(cdn, left.length, delay, message)
    }
    return jobs.length
  }
}

/** The same for a retry of the same batch of the same jobs (CloudFront's CallerReference makes it idempotent). */
function reference (cdn: string, jobs: PurgeJob[], batch: string[]): string {
  return createHash('sha256').update(`${cdn}\n${jobs.map((j) => j.id).join(',')}\n${batch.join(' ')}`).digest('hex').slice(0, 40)
}
