/**
 * Write limits per visitor address (design §2.10): they must tell a school
 * behind one NAT address from an abuser, so they are two different questions.
 *
 * - How fast may one address write at all? A token bucket (GCRA, the
 *   algorithm of redis-cell): up to `burst` writes at once, refilled at `max`
 *   per window. A class that presses "done" at the same moment fits in the
 *   burst; a school keeps writing at the refill rate; a flood from one address
 *   is held to that rate.
 * - How often may one address send the same thing? Identical writes (the
 *   same content fingerprint, see limits.ts) count per fixed window, once per
 *   Idempotency-Key: a double click, a browser re-submission or a frontend
 *   retry replays one key and costs nothing here, thirty pupils called Anna
 *   are thirty keys, and a thousand copies of one comment stop at `max`.
 *
 * Redis-backed when Redis is configured, so every backend shares one count;
 * in memory otherwise, and also whenever Redis is unreachable or slow (a Redis
 * outage must not stop writes). Memory is bounded by `maxClients` entries.
 */
import { createHash, randomBytes } from 'node:crypto'
import type { Redis } from 'ioredis'

export interface RateDecision { allowed: boolean, retryAfterSeconds: number, remaining: number }

export interface RateLimiter {
  hit (client: string): Promise<RateDecision>
}

export interface RateLimitOptions {
  /** Writes refilled per window (the sustained rate); 0 disables the limit. */
  max: number
  windowSeconds: number
  /** Writes one address may make at once (the bucket's size); defaults to `max`. */
  burst?: number
  redis?: Redis
  /** Namespace of the counters in Redis (REDIS_PREFIX). */
  prefix?: string
  now?: () => number
  /** Bound on remembered clients in memory (a flood of addresses must not grow memory without limit). */
  maxClients?: number
}

const ALLOW_ALL: RateDecision = { allowed: true, retryAfterSeconds: 0, remaining: Infinity }

/**
 * GCRA: each address has a theoretical arrival time (TAT); a write moves it
 * one emission interval T later; the write is refused when that would put the
 * TAT more than burst × T ahead of now. Stored as a number with an expiry,
 * so an idle address costs nothing.
 */
const GCRA_LUA = `
local now = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local capacity = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local nextTat = tat + interval
local ahead = nextTat - now
if ahead > capacity then return {0, math.ceil(ahead - capacity)} end
redis.call('SET', KEYS[1], tostring(nextTat), 'PX', math.ceil(ahead) + 1000)
return {1, math.floor((capacity - ahead) / interval)}
`

export function createRateLimiter (options: RateLimitOptions): RateLimiter {
  if (!Number.isInteger(options.max) || options.max < 0) throw new RangeError(`createRateLimiter: max must be a non-negative integer, got ${options.max}`)
  if (!(options.windowSeconds > 0)) throw new RangeError(`createRateLimiter: windowSeconds must be positive, got ${options.windowSeconds}`)
  if (options.burst !== undefined && (!Number.isInteger(options.burst) || options.burst < 1)) throw new RangeError(`createRateLimiter: burst must be a positive integer, got ${options.burst}`)
  if (options.max === 0) return { hit: async () => ALLOW_ALL }
  const burst = options.burst ?? options.max
  const now = options.now ?? Date.now
  const interval = options.windowSeconds * 1000 / options.max
  const capacity = burst * interval
  const maxClients = options.maxClients ?? 100_000
  const local = new Map<string, number>()
  const redis = options.redis
  const command = redis ? defineOnce(redis, 'flashcrowdGcra', GCRA_LUA) : undefined

  const decide = (allowed: boolean, value: number): RateDecision => allowed
    ? { allowed, retryAfterSeconds: 0, remaining: value }
    : { allowed, retryAfterSeconds: Math.max(1, Math.ceil(value / 1000)), remaining: 0 }

  const hitLocal = (client: string, at: number): RateDecision => {
    const tat = Math.max(local.get(client) ?? at, at)
    const ahead = tat + interval - at
    if (ahead > capacity) return decide(false, ahead - capacity)
    if (local.size >= maxClients && !local.has(client)) {
      // Forget the longest-idle addresses whose bucket is full again (they
      // would start from now anyway); a bounded look, not a scan per write.
      let looked = 0
      for (const [c, t] of local) {
        if (++looked > 64) break
        if (t <= at) local.delete(c)
      }
    }
    // Re-inserted at the end: the map stays ordered by last write, oldest first.
    local.delete(client)
    if (local.size < maxClients) local.set(client, tat + interval)
    return decide(true, Math.floor((capacity - ahead) / interval))
  }

  return {
    async hit (client) {
      const at = now()
      if (redis && command && redis.status === 'ready') {
        try {
          const [allowed, value] = await command(`${options.prefix ?? 'flashcrowd'}:rl:addr:${client}`, at, interval, capacity) as [number, number]
          return decide(allowed === 1, Number(value))
        } catch { /* fall through to the local count */ }
      }
      return hitLocal(client, at)
    }
  }
}

export interface SameContentLimiter {
  /**
   * One write of `fingerprint` by `client` under `idempotencyKey` (undefined:
   * a write without a key, which always counts). A key already counted in this
   * window is let through again: it is a replay, answered from the
   * idempotency store without writing.
   */
  hit (client: string, fingerprint: string, idempotencyKey: string | undefined): Promise<RateDecision>
}

export interface SameContentOptions {
  /** Distinct writes of one content per address per window; 0 disables the limit. */
  max: number
  windowSeconds: number
  redis?: Redis
  prefix?: string
  now?: () => number
  /** Bound on remembered (address, content) pairs in memory. */
  maxEntries?: number
}

/** A set of the keys seen per (address, content, window); it never holds more than max members. */
const SAME_LUA = `
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1 then return {1, 0} end
local n = redis.call('SCARD', KEYS[1])
if n >= tonumber(ARGV[2]) then return {0, n} end
redis.call('SADD', KEYS[1], ARGV[1])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]))
return {1, n + 1}
`

export function createSameContentLimiter (options: SameContentOptions): SameContentLimiter {
  if (!Number.isInteger(options.max) || options.max < 0) throw new RangeError(`createSameContentLimiter: max must be a non-negative integer, got ${options.max}`)
  if (!(options.windowSeconds > 0)) throw new RangeError(`createSameContentLimiter: windowSeconds must be positive, got ${options.windowSeconds}`)
  if (options.max === 0) return { hit: async () => ALLOW_ALL }
  const now = options.now ?? Date.now
  const windowMs = options.windowSeconds * 1000
  const maxEntries = options.maxEntries ?? 100_000
  const local = new Map<string, Set<string>>()
  let localWindow = -1
  const redis = options.redis
  const command = redis ? defineOnce(redis, 'flashcrowdSameContent', SAME_LUA) : undefined

  return {
    async hit (client, fingerprint, idempotencyKey) {
      const at = now()
      const window = Math.floor(at / windowMs)
      const retryAfterSeconds = Math.max(1, Math.ceil(((window + 1) * windowMs - at) / 1000))
      // Keys are up to 255 characters: a digest keeps every set member small.
      const member = idempotencyKey === undefined ? `unkeyed:${randomBytes(12).toString('base64url')}` : digest(idempotencyKey)
      const decide = (allowed: boolean, count: number): RateDecision => allowed
        ? { allowed, retryAfterSeconds: 0, remaining: Math.max(0, options.max - count) }
        : { allowed, retryAfterSeconds, remaining: 0 }
      if (redis && command && redis.status === 'ready') {
        try {
          const [allowed, count] = await command(`${options.prefix ?? 'flashcrowd'}:rl:same:${window}:${client}:${fingerprint}`, member, options.max, windowMs + 1000) as [number, number]
          return decide(allowed === 1, Number(count))
        } catch { /* fall through to the local count */ }
      }
      if (window !== localWindow) { local.clear(); localWindow = window }
      const id = `${client} ${fingerprint}`
      let seen = local.get(id)
      if (seen?.has(member)) return decide(true, seen.size)
      if (seen && seen.size >= options.max) return decide(false, seen.size)
      if (!seen) {
        // Past the bound, new pairs are let through uncounted rather than growing memory.
        if (local.size >= maxEntries) return decide(true, 1)
        seen = new Set()
        local.set(id, seen)
      }
      seen.add(member)
      return decide(true, seen.size)
    }
  }
}

function digest (value: string): string {
  return createHash('sha256').update(value).digest('base64url').slice(0, 22)
}

type ScriptCommand = (key: string, ...args: Array<string | number>) => Promise<unknown>

/** Registers a Lua script once per connection (ioredis sends EVALSHA, EVAL on a cache miss). */
function defineOnce (redis: Redis, name: string, lua: string): ScriptCommand {
  const commands = redis as unknown as Record<string, ScriptCommand | undefined>
  if (typeof commands[name] !== 'function') redis.defineCommand(name, { numberOfKeys: 1, lua })
  return (key, ...args) => (commands[name] as ScriptCommand).call(redis, key, ...args)
}
