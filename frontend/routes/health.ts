/** `/-/health`: ready when the read pool answers. */
import type { FastifyInstance } from 'fastify'
import { ping, type DatabaseHandle } from '../../common/db.js'

export default async function healthRoutes (app: FastifyInstance, opts: { db: DatabaseHandle }) {
  app.get('/-/health', { logLevel: 'warn' }, async (_request, reply) => {
    const ok = await ping(opts.db, 1000)
    reply.code(ok ? 200 : 503).header('cache-control', 'no-store')
    if (!ok) reply.header('retry-after', '5')
    return { status: ok ? 'ok' : 'unavailable', role: 'frontend' }
  })
}
