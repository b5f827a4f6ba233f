/**
 * Graceful close for Fastify apps behind keep-alive clients (the cache's and
 * the frontends' undici pools). `close()` stops accepting and closes idle
 * connections, but a connection that was busy when the close began turns idle
 * afterwards and would be kept open until its keep-alive timeout, holding the
 * close (and everything after it: the outbox drain) for a minute. Answers sent
 * once closing began say `Connection: close`, so each such connection ends
 * with its last response.
 */
import fp from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'

export const gracefulClose = fp(async function gracefulClose (app: FastifyInstance) {
  let closing = false
  app.addHook('preClose', async () => { closing = true })
  // A callback hook: it runs on every answer, and a promise per answer is not free.
  app.addHook('onSend', (_request, reply, payload, done) => {
    if (closing) reply.header('connection', 'close')
    done(null, payload)
  })
}, { name: 'flashcrowd-graceful-close', fastify: '5.x' })
