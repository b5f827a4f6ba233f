/**
 * The one path every write takes: route (validation) → `writer.run` →
 * group commit (common/group-commit.ts: gathered with its neighbours) → one
 * transaction for the batch (write-batch.ts: idempotency keys, the data, one
 * outbox row) → wake the outbox publisher → answer with the commit position.
 */
import type { FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { siblingPool, type DatabaseHandle } from '../common/db.js'
import { Errors, isDatabaseUnavailable, isStatementTimeout } from '../common/errors.js'
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
  onBatch?: (size: number) => void
  onSplit?: (size: number) => void
}

/** SQLSTATE classes that say "this data", not "this database": worth finding the one write that caused them. */
const DATA_ERROR = /^(22|23)/
/** Of those, the ones about other rows (unique, foreign key, exclusion): a conflict, not a bad value. */
const CONFLICT = new Set(['23505', '23503', '23P01'])
/** Deadlock, serialization failure: the same batch may simply run again. */
const TRANSIENT = new Set(['40P01', '40001'])

export const writerPlugin = fp(async function writerPlugin (app, opts: WriterOptions) {
  const wal = new WalPosition()
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
    isolate: (err) => !isDatabaseUnavailable(err) && !isStatementTimeout(err),
    retry: (err) => TRANSIENT.has(String((err as { code?: unknown } | null)?.code)),
    onBatch: opts.onBatch,
    onSplit: opts.onSplit
  })

  const writer: Writer = {
    async run (request, reply, kind, input) {
      const key = parseIdempotencyKey(request.headers['idempotency-key'])
      const write: PendingWrite = { kind, input }
      if (key !== undefined) {
        write.key = key
        write.hash = requestHash(request.method, request.url.split('?')[0], request.body)
      }
      let outcome: BatchResult
      try {
        outcome = await batches.submit(write)
      } catch (err) {
        throw clientError(err)
      }
      if (outcome instanceof Error) throw outcome
      reply.code(outcome.status)
      reply.header('cache-control', 'no-store')
      // The answer's bytes, as stored for replays: sent as they are, never re-serialized.
      reply.type('application/json; charset=utf-8')
      if (outcome.replayed) reply.header('idempotent-replayed', 'true')
      // A replay carries a position too: a double click's browser follows the second answer.
      if (outcome.lsn) reply.header('x-commit-lsn', outcome.lsn)
      return outcome.text
    },
    get pending () { return batches.pending },
    drain: () => batches.drain(),
    close: () => pool.end()
  }
  app.decorate('writer', writer)
}, { name: 'flashcrowd-writer', fastify: '5.x' })

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
