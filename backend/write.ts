/**
 * The one path every write takes: idempotency key → transaction (data +
 * outbox) → wake the outbox publisher → answer with the commit position.
 */
import type { Transaction } from 'kysely'
import type { FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import type { Database } from '../common/db-types.js'
import type { DatabaseHandle } from '../common/db.js'
import { idempotentWrite, parseIdempotencyKey, requestHash, type WriteResult } from './idempotency.js'
import type { OutboxPublisher } from './outbox.js'
import { WalPosition } from './wal.js'

export interface Writer {
  run<T> (request: FastifyRequest, reply: FastifyReply, work: (trx: Transaction<Database>) => Promise<WriteResult<T>>): Promise<unknown>
}

declare module 'fastify' {
  interface FastifyInstance { writer: Writer }
}

export const writerPlugin = fp(async function writerPlugin (app, opts: { database: DatabaseHandle, publisher: OutboxPublisher, idempotencyTtlSeconds: number }) {
  const wal = new WalPosition()

  const writer: Writer = {
    async run (request, reply, work) {
      const key = parseIdempotencyKey(request.headers['idempotency-key'])
      const hash = requestHash(request.method, request.url.split('?')[0], request.body)
      // The transaction and the commit position on one connection: a write
      // never waits for a second pool checkout while the pool is busy.
      const { outcome, lsn } = await opts.database.db.connection().execute(async (conn) => {
        const outcome = await idempotentWrite(conn, { key, hash, ttlSeconds: opts.idempotencyTtlSeconds }, work)
        // Read after the commit returned (for a replay: after the original
        // commit), so it is at or past the commit record. A replay carries it
        // too: a double click's browser follows the second answer.
        return { outcome, lsn: await wal.read(conn) }
      })
      reply.code(outcome.status)
      reply.header('cache-control', 'no-store')
      // The answer's bytes, as stored for replays: sent as they are, never re-serialized.
      reply.type('application/json; charset=utf-8')
      if (outcome.replayed) reply.header('idempotent-replayed', 'true')
      else opts.publisher.kick()
      if (lsn) reply.header('x-commit-lsn', lsn)
      return outcome.body
    }
  }
  app.decorate('writer', writer)
}, { name: 'flashcrowd-writer', fastify: '5.x' })
