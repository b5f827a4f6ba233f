/**
 * Group commit: writes that arrive together share one transaction, so a
 * rush of sign-ups costs the primary one commit (one WAL flush) per batch
 * instead of one per visitor.
 *
 * The policy, in full:
 * - a write waits for company at most `maxWaitMs` (0: until the end of the
 *   current event-loop turn), and never longer than it takes a transaction
 *   slot to free up when all `concurrency` slots are busy;
 * - a batch holds at most `maxBatch` writes; a full batch leaves at once;
 * - when a slot frees and writes are waiting, they leave at once: they have
 *   already waited as long as a transaction takes.
 * So a lone write is not delayed (beyond `maxWaitMs`), and under load the
 * batch grows by itself to what arrived during the previous transaction.
 *
 * One bad write never fails its neighbours: when a batch's transaction fails
 * as a whole and `isolate(err)` says the cause may be one write's (a
 * constraint, not a lost database), the batch is split in halves and each
 * half is run again in its own transaction, down to the offender alone,
 * which is the only one to get the error. A deadlock or serialization
 * failure is simply run again (`retry`).
 */

export interface GroupCommitOptions<I, R> {
  /** Runs one transaction for all `items`; resolves to one result per item, in order. */
  run: (items: I[]) => Promise<R[]>
  maxBatch: number
  maxWaitMs: number
  /** Transactions in flight at once. */
  concurrency: number
  /** true when a failure of the whole batch may be the fault of one item (split and run again). */
  isolate: (err: unknown) => boolean
  /** true when the same items may simply be run again (deadlock, serialization failure). */
  retry?: (err: unknown) => boolean
  onBatch?: (size: number) => void
  onSplit?: (size: number) => void
}

interface Waiting<I, R> {
  item: I
  resolve: (result: R) => void
  reject: (err: unknown) => void
}

const MAX_RETRIES = 3

export class GroupCommit<I, R> {
  readonly #o: GroupCommitOptions<I, R>
  #queue: Array<Waiting<I, R>> = []
  #inFlight = 0
  #timer: NodeJS.Timeout | NodeJS.Immediate | undefined
  #idle: Array<() => void> = []

  constructor (options: GroupCommitOptions<I, R>) {
    if (!Number.isInteger(options.maxBatch) || options.maxBatch < 1) throw new RangeError(`GroupCommit: maxBatch must be a positive integer, got ${options.maxBatch}`)
    if (!Number.isInteger(options.concurrency) || options.concurrency < 1) throw new RangeError(`GroupCommit: concurrency must be a positive integer, got ${options.concurrency}`)
    if (!(options.maxWaitMs >= 0)) throw new RangeError(`GroupCommit: maxWaitMs must be 0 or more, got ${options.maxWaitMs}`)
    this.#o = options
  }

  /** Resolves with this item's result once its batch committed; rejects with its own error. */
  submit (item: I): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      this.#queue.push({ item, resolve, reject })
      this.#schedule()
    })
  }

  /** Writes waiting or in flight. */
  get pending (): number {
    return this.#queue.length + this.#inFlight
  }

  /** Resolves when nothing is waiting or in flight (shutdown). */
  drain (): Promise<void> {
    if (this.pending === 0) return Promise.resolve()
    return new Promise((resolve) => { this.#idle.push(resolve) })
  }

  #schedule (): void {
    if (this.#inFlight >= this.#o.concurrency || this.#queue.length === 0) return
    if (this.#queue.length >= this.#o.maxBatch) { this.#flush(); return }
    if (this.#timer !== undefined) return
    this.#timer = this.#o.maxWaitMs === 0 ? setImmediate(this.#go) : setTimeout(this.#go, this.#o.maxWaitMs)
  }

  /** Made once: a closure per scheduled batch is garbage (and, under tsx, a defineProperty call). */
  readonly #go = (): void => { this.#timer = undefined; this.#flush() }

  #flush (): void {
    if (this.#timer !== undefined) {
      clearTimeout(this.#timer as NodeJS.Timeout)
      clearImmediate(this.#timer as NodeJS.Immediate)
      this.#timer = undefined
    }
    while (this.#inFlight < this.#o.concurrency && this.#queue.length > 0) {
      const batch = this.#queue.splice(0, this.#o.maxBatch)
      this.#inFlight++
      this.#o.onBatch?.(batch.length)
      void this.#settle(batch, 0).finally(() => {
        this.#inFlight--
        if (this.#queue.length > 0) this.#flush()
        else if (this.#inFlight === 0) for (const resolve of this.#idle.splice(0)) resolve()
      })
      // Leave the rest to gather unless it is already a full batch.
      if (this.#queue.length < this.#o.maxBatch) break
    }
    this.#schedule()
  }

  async #settle (batch: Array<Waiting<I, R>>, attempt: number): Promise<void> {
    let results: R[]
    try {
      results = await this.#o.run(batch.map((w) => w.item))
    } catch (err) {
      if (attempt < MAX_RETRIES && this.#o.retry?.(err)) return this.#settle(batch, attempt + 1)
      if (batch.length === 1 || !this.#o.isolate(err)) {
        for (const w of batch) w.reject(err)
        return
      }
      this.#o.onSplit?.(batch.length)
      const half = batch.length >> 1
      await this.#settle(batch.slice(0, half), 0)
      await this.#settle(batch.slice(half), 0)
      return
    }
    for (let i = 0; i < batch.length; i++) batch[i].resolve(results[i])
  }
}
