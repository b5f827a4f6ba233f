/**
 * `/-/health`: ready when the read pool answers. While it is failing over the
 * frontend stays in its load balancer (200, `database: "failing-over"`): it
 * keeps answering from its render caches, and the cache layer in front from
 * its own (common/database-health.ts).
 */
import type { FastifyInstance } from 'fastify'
import { DatabaseHealth, healthStatus } from '../../common/database-health.js'
import type { DatabaseHandle } from '../../common/db.js'

export default async function healthRoutes (app: FastifyInstance, opts: { db: DatabaseHandle, failoverMs: number, now: () => number }) {
  const databaseHealth = new DatabaseHealth({ database: opts.db, failoverMs: opts.failoverMs, now: opts.now })
  app.get('/-/health', { logLevel: 'warn' }, async (_request, reply) => {
    const report = await databaseHealth.check()
    const { code, status } = healthStatus(report)
    reply.code(code).header('cache-control', 'no-store')
    if (code !== 200) reply.header('retry-after', '5')
    return { status, role: 'frontend', database: report.state, ...(report.since ? { databaseSince: report.since } : {}) }
  })
}
