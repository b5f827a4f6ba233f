/**
 * The write limits as hooks (rate-limit.ts has the counting): every write
 * first passes the per-address bucket (before its body is even read), then,
 * once validated, the identical-content limit of its route. The visitor's
 * address is `request.ip`: X-Forwarded-For believed only from
 * BACKEND_TRUSTED_PROXIES (design §2.10).
 */
import fp from 'fastify-plugin'
import { createHash } from 'node:crypto'
import type { FastifyInstance, FastifyError } from 'fastify'
import type { Redis } from 'ioredis'
import { Errors } from '../common/errors.js'
import type { BackendConfig } from './config.js'
import { createRateLimiter, createSameContentLimiter } from './rate-limit.js'

declare module 'fastify' {
  interface FastifyContextConfig {
    /**
     * The parts of a validated body that make two writes "the same" for the
     * identical-content limit (e.g. an article and a comment's text, not its
     * author). Routes without it have no such limit.
     */
    sameContent?: (body: any) => unknown[]
  }
}

export interface LimitsOptions {
  config: Pick<BackendConfig, 'BACKEND_RATE_LIMIT_MAX' | 'BACKEND_RATE_LIMIT_BURST' | 'BACKEND_RATE_LIMIT_WINDOW_S' | 'BACKEND_RATE_LIMIT_SAME_MAX' | 'REDIS_PREFIX'>
  redis?: Redis
  now: () => number
}

/**
 * Case, spacing and Unicode forms do not make a text different: "Great
 * tutorial!!" and "great  tutorial!!" are one content.
 */
export function contentFingerprint (route: string, parts: unknown[]): string {
  const normal = parts.map((p) => typeof p === 'string' ? p.normalize('NFKC').toLowerCase().replace(/\s+/g, ' ').trim() : p)
  return createHash('sha256').update(JSON.stringify([route, normal])).digest('base64url').slice(0, 22)
}

function refuse (error: typeof Errors.RATE_LIMITED, retryAfterSeconds: number): FastifyError {
  const err = new error(retryAfterSeconds) as FastifyError & { retryAfter?: number }
  err.retryAfter = retryAfterSeconds
  return err
}

export const limitsPlugin = fp(async function limitsPlugin (app: FastifyInstance, opts: LimitsOptions) {
  const { config } = opts
  const perAddress = createRateLimiter({
    max: config.BACKEND_RATE_LIMIT_MAX,
    burst: config.BACKEND_RATE_LIMIT_BURST,
    windowSeconds: config.BACKEND_RATE_LIMIT_WINDOW_S,
    redis: opts.redis,
    prefix: config.REDIS_PREFIX,
    now: opts.now
  })
  const sameContent = createSameContentLimiter({
    max: config.BACKEND_RATE_LIMIT_SAME_MAX,
    windowSeconds: config.BACKEND_RATE_LIMIT_WINDOW_S,
    redis: opts.redis,
    prefix: config.REDIS_PREFIX,
    now: opts.now
  })

  // A disabled limit costs nothing per request (load tests and benchmarks switch them off).
  if (config.BACKEND_RATE_LIMIT_MAX > 0) app.addHook('onRequest', async (request) => {
    if (request.method === 'GET' || request.method === 'HEAD') return
    const decision = await perAddress.hit(request.ip)
    if (!decision.allowed) throw refuse(Errors.RATE_LIMITED, decision.retryAfterSeconds)
  })

  if (config.BACKEND_RATE_LIMIT_SAME_MAX > 0) app.addHook('preHandler', async (request) => {
    const parts = request.routeOptions.config.sameContent
    if (!parts) return
    const key = request.headers['idempotency-key']
    const fingerprint = contentFingerprint(request.routeOptions.url ?? request.url, parts(request.body))
    const decision = await sameContent.hit(request.ip, fingerprint, typeof key === 'string' ? key.trim() : undefined)
    if (!decision.allowed) throw refuse(Errors.REPEATED_CONTENT, decision.retryAfterSeconds)
  })
}, { name: 'flashcrowd-limits', fastify: '5.x' })
