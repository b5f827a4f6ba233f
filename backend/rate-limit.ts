/**
 * Fixed-window rate limits per client address. Redis-backed when Redis is
 * configured, so every backend shares one count; in memory otherwise, and also
 * whenever Redis is unreachable (a Redis outage must not stop writes).
 */
import type { Redis } from 'ioredis'

export interface RateDecision { allowed: boolean, retryAfterSeconds: number, remaining: number }

export interface RateLimiter {
  hit (client: string): Promise<RateDecision>
}

export interface RateLimitOptions {
  max: number
  windowSeconds: number
  redis?: Redis
  /** Namespace of the counters in Redis (REDIS_PREFIX). */
  prefix?: string
  now?: () => number
  /** Bound on remembered clients in memory (a flood of addresses must not grow memory without limit). */
  maxClients?: number
}

export function createRateLimiter (options: RateLimitOptions): RateLimiter {
  const now = options.now ?? Date.now
  const windowMs = options.windowSeconds * 1000
  const maxClients = options.maxClients ?? 100_000
  const local = new Map<string, number>()
  let localWindow = -1

  const decide = (count: number, windowStart: number): RateDecision => {
    const retryAfterSeconds = Math.max(1, Math.ceil((windowStart + windowMs - now()) / 1000))
    return { allowed: count <= options.max, retryAfterSeconds, remaining: Math.max(0, options.max - count) }
  }

  const hitLocal = (client: string, window: number): RateDecision => {
    if (window !== localWindow) { local.clear(); localWindow = window }
    const count = (local.get(client) ?? 0) + 1
    if (local.size < maxClients || local.has(client)) local.set(client, count)
    return decide(count, window * windowMs)
  }

  return {
    async hit (client) {
      if (options.max === 0) return { allowed: true, retryAfterSeconds: 0, remaining: Infinity }
      const window = Math.floor(now() / windowMs)
      if (options.redis && options.redis.status === 'ready') {
        const key = `${options.prefix ?? 'flashcrowd'}:rl:${window}:${client}`
        try {
          const res = await options.redis.multi().incr(key).pexpire(key, windowMs + 1000).exec()
          const count = Number(res?.[0]?.[1])
          if (Number.isFinite(count)) return decide(count, window * windowMs)
        } catch { /* fall through to the local count */ }
      }
      return hitLocal(client, window)
    }
  }
}
