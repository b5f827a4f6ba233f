/**
 * The one path every write takes: route (validation) → `writer.run` →
 * group commit (common/group-commit.ts: gathered with its neighbours) → one
 * transaction for the batch (write-batch.ts: idempotency keys, the data, one
 * outbox row) → wake the outbox publisher → answer with the commit position.
 *
 * Through a failover (design §2.6): a batch whose connection died, was
 * refused or turned read-only mid-flight has an unknown outcome — its COMMIT
 * may or may not have landed. Every write carries an idempotency key (the
 * client's, or one of the writer's own), so the writer simply runs it again
 * on a fresh connection, with back-off, until BACKEND_DB_RETRY_MS: a write
 * that committed finds its key and replays its stored answer, one that did
 * not is written once. Only when the budget runs out does the client get a
 * 503 with Retry-After.
 */
import { randomUUID } from 'node:crypto'
import type { FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { siblingPool, type DatabaseHandle } from '../common/db.js'
import { Errors, isFailover, isStatementTimeout } from '../common/errors.js'
import { GroupCommit } from '../common/group-commit.js'
import { parseIdempotencyKey, requestHash } from './idempotency.js'
import type { OutboxPublisher } from './outbox.js'
import { WalPosition } from './wal.js'
import { runWriteBatch, type BatchResult, type PendingWrite } from './write-batch.js'
import type { WriteKind } from './write-kind.js'

export interface Writer {
  /** Stores `input` as a `kind` write and answers the request (status, headers, body bytes). */
  run<I> (request: FastifyRequest, reply: FastifyReply, kind: WriteKind<I>, input: I): Promise<string>
  /** Writes waiting for their batch or in flight. */
  readonly pending: number
  /** Resolves when no write is waiting or in flight. */
  drain (): Promise<void>
  /** Closes the writer's connections (after `drain`). */
  close (): Promise<void>
}

declare module 'fastify' {
  interface FastifyInstance { writer: Writer }
}

export interface WriterOptions {
  database: DatabaseHandle
  publisher: OutboxPublisher
  idempotencyTtlSeconds: number
  /** Right-hand side of the Message-ID of each queued e-mail. */
  mailDomain: string
  batchMax: number
  batchWaitMs: number
  concurrency: number
  /** How long a write whose batch met a failover is run again before the client gets a 503. */
  retryMs: number
  onBatch?: (size: number) => void
  onSplit?: (size: number) => void
  /** A write's batch met a failover and the write is run again (attempt 1, 2, …). */
  onRetry?: (attempt: number, err: unknown) => void
  sleep?: (ms: number) => Promise<void>
}

/** First pause before running a write again; doubled per attempt up to RETRY_MAX_PAUSE_MS, with jitter. */
const RETRY_FIRST_PAUSE_MS = 50
const RETRY_MAX_PAUSE_MS = 1000

/** SQLSTATE classes that say "this data", not "this database": worth finding the one write that caused them. */
const DATA_ERROR = /^(22|23)/
/** Of those, the ones about other rows (unique, foreign key, exclusion): a conflict, not a bad value. */
const CONFLICT = new Set(['23505', '23503', '23P01'])
/** Deadlock, serialization failure: the same batch may simply run again. */
const TRANSIENT = new Set(['40P01', '40001'])

export const writerPlugin = fp(async function writerPlugin (app, opts: WriterOptions) {
  const wal = new WalPosition()
  // The writer's own keys outlive the retry budget by a minute (the sweep removes them after).
  const ownKeyTtlSeconds = Math.ceil(opts.retryMs / 1000) + 60
  // The writer's own connections, one per transaction slot, in pipeline mode:
  // a batch's BEGIN, statements and COMMIT go out together (write-batch.ts).
  const pool = siblingPool(opts.database, { max: opts.concurrency, pipeline: true })
  const batches = new GroupCommit<PendingWrite, BatchResult>({
    run: async (items) => {
      const results = await runWriteBatch(items, { pool, idempotencyTtlSeconds: opts.idempotencyTtlSeconds, wal, mailDomain: opts.mailDomain })
      if (results.some((r) => !(r instanceof Error) && r.stale)) opts.publisher.kick()
      return results
    },
    maxBatch: opts.batchMax,
    maxWaitMs: opts.batchWaitMs,
    concurrency: opts.concurrency,
    isolate: (err) => !isFailover(err) && !isStatementTimeout(err),
    retry: (err) => TRANSIENT.has(String((err as { code?: unknown } | null)?.code)),
    onBatch: opts.onBatch,
    onSplit: opts.onSplit
  })

  const sleep = opts.sleep ?? ((ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms)))
  /** Writes between two attempts (counted in `pending`, awaited by `drain`). */
  let retrying = 0
  const idle: Array<() => void> = []
  const settled = () => {
    if (retrying === 0) for (const resolve of idle.splice(0)) resolve()
  }

  /**
   * Runs `write` until it has an outcome: its batch's answer, or a failure
   * that is not a failover's, or the retry budget spent (the last error,
   * which the error handler turns into 503 + Retry-After).
   */
  async function submitThroughFailover (write: PendingWrite): Promise<BatchResult> {
    const deadline = Date.now() + opts.retryMs
    for (let attempt = 1; ; attempt++) {
      let failure: unknown
      try {
        const outcome = await batches.submit(write)
        // A committed batch whose stored answer could not be read back, or a
        // key whose holder just gave it up: the same write, run again, finds it.
        if (!(outcome instanceof Error) || !isRetryableOutcome(outcome)) return outcome
        failure = outcome
      } catch (err) {
        if (!isFailover(err)) throw err
        failure = err
      }
      const pause = Math.min(RETRY_MAX_PAUSE_MS, RETRY_FIRST_PAUSE_MS * 2 ** (attempt - 1)) * (0.5 + Math.random() / 2)
      // Out of budget: the error handler answers 503 with Retry-After.
      if (Date.now() + pause >= deadline) throw failure
      opts.onRetry?.(attempt, failure)
      retrying++
      try { await sleep(pause) } finally { retrying--; settled() }
    }
  }

  const writer: Writer = {
    async run (request, reply, kind, input) {
      const key = parseIdempotencyKey(request.headers['idempotency-key'])
      // A write without a key gets one of the writer's own, kept only as long
      // as it may be run again: after a failover it is what tells a committed
      // write (replay its answer) from one that never landed (write it once).
      const write: PendingWrite = key !== undefined
        ? { kind, input, key }
        : { kind, input, key: `be-${randomUUID()}`, ttlSeconds: ownKeyTtlSeconds }
      write.hash = requestHash(request.method, request.url.split('?')[0], request.body)
      let outcome: BatchResult
      try {
        outcome = await submitThroughFailover(write)
      } catch (err) {
        throw clientError(err)
      }
      if (outcome instanceof Error) throw outcome
      // The writer's own key is not the client's: what it replays is this very request's first attempt.
      if (key === undefined && outcome.replayed) outcome = { ...outcome, replayed: false }
      reply.code(outcome.status)
      reply.header('cache-control', 'no-store')
      // The answer's bytes, as stored for replays: sent as they are, never re-serialized.
      reply.type('application/json; charset=utf-8')
      if (outcome.replayed) reply.header('idempotent-replayed', 'true')
      // A replay carries a position too: a double click's browser follows the second answer.
      if (outcome.lsn) reply.header('x-commit-lsn', outcome.lsn)
      return outcome.text
    },
    get pending () { return batches.pending + retrying },
    async drain () {
      await batches.drain()
      if (retrying === 0) return
      await new Promise<void>((resolve) => { idle.push(resolve) })
      await writer.drain()
    },
    close: () => pool.end()
  }
  app.decorate('writer', writer)
}, { name: 'flashcrowd-writer', fastify: '5.x' })

/** An answer that says "run me again": the database, not the write, was in the way (write-batch.ts). */
function isRetryableOutcome (outcome: Error): boolean {
  return (outcome as { code?: string }).code === 'FC_ERR_UNAVAILABLE'
}

/**
 * A write that failed on its own (its batch was split down to it): a
 * constraint or data error is this request's 4xx, not a 500; anything else
 * (the database away, a bug) goes to the error handler as it is.
 */
function clientError (err: unknown): unknown {
  const code = (err as { code?: unknown } | null)?.code
  if (typeof code !== 'string' || !DATA_ERROR.test(code)) return err
  if (CONFLICT.has(code)) return new Errors.WRITE_CONFLICT('the write conflicts with data that changed meanwhile; reload and try again')
  return new Errors.VALIDATION('the request holds a value the database does not accept')
}
