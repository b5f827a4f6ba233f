/**
 * The render cache: pages this frontend rendered, kept so a flash crowd on one
 * article costs one render, not one per request.
 *
 * - Level 1: an in-process LRU bounded by bytes (design §2.7).
 * - Level 2 (optional): Redis, shared by every frontend, so a page rendered
 *   by one is a hit for the others. Redis being slow or down only costs hits:
 *   every call has a short deadline and failures fall through to rendering.
 * - Invalidation: the same bus events the backend and the cache layer use
 *   (surrogate keys, URL paths, bans). A render that was running while one of
 *   its keys was invalidated is not stored (it may have read the old data),
 *   and a level-2 entry rendered before a local invalidation of one of its
 *   keys (or before a bus gap) is ignored, so a late write from a slower
 *   frontend cannot bring an old page back.
 */
import { LRUCache } from 'lru-cache'
import type { Redis } from 'ioredis'

export interface RenderedPage {
  status: number
  contentType: string
  body: Buffer
  /** Strong validator of `body` (RFC 9110 §8.8.3). */
  etag: string
  /** Surrogate keys the page shows. */
  tags: string[]
  cacheControl: string
  /** Clock time of the render (ms). */
  renderedAt: number
  /** How long the render cache may keep it (ms). */
  ttlMs: number
}

export interface RenderCacheOptions {
  maxBytes: number
  redis?: Redis
  /** Prefix of level-2 keys. */
  prefix?: string
  /** Deadline of one level-2 read (ms). */
  redisTimeoutMs?: number
  now?: () => number
  onError?: (err: unknown) => void
}

/** A render's ticket: what it must check before storing. */
export interface RenderToken { seq: number, at: number }

const ENTRY_OVERHEAD = 256

export class RenderCache {
  readonly #l1: LRUCache<string, RenderedPage> | undefined
  readonly #redis: Redis | undefined
  readonly #prefix: string
  readonly #redisTimeoutMs: number
  readonly #now: () => number
  readonly #onError: (err: unknown) => void
  #seq = 0
  /** Sequence number of the last invalidation of each key (bounded: only renders in flight need it). */
  readonly #tagSeq = new LRUCache<string, { seq: number, at: number }>({ max: 100_000 })
  /** Everything rendered before this time is invalid (bus gap, clear). */
  /** Tag → keys of level-1 pages showing it, so a purge touches only what it must. */
  readonly #byTag = new Map<string, Set<string>>()
  #clearedSeq = 0
  #clearedAt = -Infinity
  /** Bans by URL pattern, applied to level-2 reads too: [regex, seq, at]. */
  readonly #bans: Array<{ re: RegExp, seq: number, at: number }> = []

  constructor (options: RenderCacheOptions) {
    if (!Number.isInteger(options.maxBytes) || options.maxBytes < 0) throw new RangeError(`RenderCache: maxBytes must be an integer >= 0, got ${options.maxBytes}`)
    this.#now = options.now ?? Date.now
    const perf = { now: this.#now }
    this.#l1 = options.maxBytes > 0
      ? new LRUCache<string, RenderedPage>({
        maxSize: options.maxBytes,
        sizeCalculation: (page, key) => page.body.length + key.length + page.tags.join(' ').length + ENTRY_OVERHEAD,
        ttlAutopurge: false,
        // Read the (injectable) clock on every check instead of a timer-refreshed copy.
        ttlResolution: 0,
        perf,
        // Keeps the tag index in step with evictions, expiries and overwrites.
        dispose: (page, key) => { this.#unindex(key, page.tags) }
      })
      : undefined
    this.#redis = options.redis
    this.#prefix = options.prefix ?? 'flashcrowd:render:v1:'
    this.#redisTimeoutMs = options.redisTimeoutMs ?? 50
    this.#onError = options.onError ?? (() => {})
  }

  get enabled (): boolean { return this.#l1 !== undefined }
  get size (): number { return this.#l1?.size ?? 0 }
  get bytes (): number { return this.#l1?.calculatedSize ?? 0 }

  /** Take before reading the database for a render. */
  begin (): RenderToken { return { seq: this.#seq, at: this.#now() } }

  /** Whether anything the page shows was invalidated since `token`. */
  invalidatedSince (token: RenderToken, tags: readonly string[]): boolean {
    if (this.#clearedSeq > token.seq) return true
    for (const tag of tags) {
      const s = this.#tagSeq.get(tag)
      if (s && s.seq > token.seq) return true
    }
    return false
  }

  /** Level 1 only, synchronously: the hot path of a hit costs no promise. */
  getLocal (key: string): RenderedPage | undefined {
    return this.#l1?.get(key)
  }

  /**
   * `acceptShared` vets a level-2 page before it is used or copied into level
   * 1: another frontend may have rendered it from a replica that had not yet
   * replayed a write this frontend already knows about.
   */
  async get (key: string, acceptShared: (page: RenderedPage) => boolean = () => true): Promise<{ page: RenderedPage, level: 1 | 2 } | undefined> {
    if (!this.#l1) return undefined
    const local = this.#l1.get(key)
    if (local) return { page: local, level: 1 }
    if (!this.#redis) return undefined
    const page = await this.#getShared(key)
    if (!page) return undefined
    const age = this.#now() - page.renderedAt
    if (age < 0 || age >= page.ttlMs || this.#staleByLocalEvents(key, page) || !acceptShared(page)) return undefined
    this.#store(key, page, page.ttlMs - age)
    return { page, level: 2 }
  }

  /** Stores a render unless something it shows was invalidated while it ran; returns whether it was stored. */
  set (key: string, page: RenderedPage, token: RenderToken): boolean {
    if (!this.#l1 || page.ttlMs <= 0) return false
    if (this.invalidatedSince(token, page.tags) || this.#bannedSince(key, token.seq)) return false
    if (!this.#store(key, page, page.ttlMs)) return false
    if (this.#redis) void this.#setShared(key, page)
    return true
  }

  /** Drops every page tagged with one of `keys` (here and in level 2). */
  invalidateKeys (keys: readonly string[]): number {
    const seq = ++this.#seq
    const at = this.#now()
    const wanted = new Set(keys)
    for (const k of wanted) this.#tagSeq.set(k, { seq, at })
    let dropped = 0
    if (this.#l1) {
      for (const tag of wanted) {
        const set = this.#byTag.get(tag)
        if (!set) continue
        for (const key of [...set]) if (this.#l1.delete(key)) dropped++
        this.#byTag.delete(tag)
      }
    }
    if (this.#redis && keys.length > 0) void this.#dropSharedTags(keys)
    return dropped
  }

  /** Drops one URL path (every query variant). */
  invalidatePath (path: string): number {
    const re = new RegExp(`^${path.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}(\\?|$)`)
    return this.ban(re)
  }

  /** Drops every page whose key (path and query) matches. */
  ban (pattern: RegExp): number {
    const seq = ++this.#seq
    this.#bans.push({ re: pattern, seq, at: this.#now() })
    if (this.#bans.length > 1000) this.#bans.shift()
    let dropped = 0
    if (this.#l1) {
      for (const key of [...this.#l1.keys()]) {
        if (pattern.test(key)) { this.#l1.delete(key); dropped++ }
      }
    }
    return dropped
  }

  /** Forgets everything rendered before now (a gap in the bus: events may have been missed). */
  clear (): void {
    this.#clearedSeq = ++this.#seq
    this.#clearedAt = this.#now()
    this.#bans.length = 0
    this.#l1?.clear()
  }

  #store (key: string, page: RenderedPage, ttl: number): boolean {
    this.#l1!.set(key, page, { ttl })
    if (!this.#l1!.has(key)) return false // larger than the whole cache: not stored
    for (const tag of page.tags) {
      let set = this.#byTag.get(tag)
      if (!set) { set = new Set(); this.#byTag.set(tag, set) }
      set.add(key)
    }
    return true
  }

  #unindex (key: string, tags: readonly string[]): void {
    for (const tag of tags) {
      const set = this.#byTag.get(tag)
      if (!set) continue
      set.delete(key)
      if (set.size === 0) this.#byTag.delete(tag)
    }
  }

  #bannedSince (key: string, seq: number): boolean {
    for (const b of this.#bans) if (b.seq > seq && b.re.test(key)) return true
    return false
  }

  #staleByLocalEvents (key: string, page: RenderedPage): boolean {
    if (page.renderedAt <= this.#clearedAt) return true
    for (const tag of page.tags) {
      const s = this.#tagSeq.get(tag)
      if (s && s.at >= page.renderedAt) return true
    }
    for (const b of this.#bans) if (b.at >= page.renderedAt && b.re.test(key)) return true
    return false
  }

  async #getShared (key: string): Promise<RenderedPage | undefined> {
    const redis = this.#redis!
    let timer: NodeJS.Timeout | undefined
    try {
      const deadline = new Promise<null>((resolve) => { timer = setTimeout(() => resolve(null), this.#redisTimeoutMs) })
      const buf = await Promise.race([redis.getBuffer(this.#prefix + key), deadline])
      return buf ? decode(buf) : undefined
    } catch (err) {
      this.#onError(err)
      return undefined
    } finally {
      clearTimeout(timer)
    }
  }

  async #setShared (key: string, page: RenderedPage): Promise<void> {
    const redis = this.#redis!
    try {
      const multi = redis.multi().set(this.#prefix + key, encode(page), 'PX', page.ttlMs)
      for (const tag of page.tags) {
        const tagKey = `${this.#prefix}tag:${tag}`
        multi.sadd(tagKey, key).pexpire(tagKey, Math.max(page.ttlMs, 60_000))
      }
      await multi.exec()
    } catch (err) {
      this.#onError(err)
    }
  }

  async #dropSharedTags (tags: readonly string[]): Promise<void> {
    const redis = this.#redis!
    try {
      for (const tag of tags) {
        const tagKey = `${this.#prefix}tag:${tag}`
        const members = await redis.smembers(tagKey)
        const multi = redis.multi().del(tagKey)
        for (const m of members) multi.del(this.#prefix + m)
        await multi.exec()
      }
    } catch (err) {
      this.#onError(err)
    }
  }
}

/** Level-2 value: a length-prefixed JSON header, then the body bytes. */
function encode (page: RenderedPage): Buffer {
  const { body, ...meta } = page
  const header = Buffer.from(JSON.stringify(meta))
  const len = Buffer.alloc(4)
  len.writeUInt32BE(header.length)
  return Buffer.concat([len, header, body])
}

function decode (buf: Buffer): RenderedPage | undefined {
  if (buf.length < 4) return undefined
  const n = buf.readUInt32BE(0)
  if (buf.length < 4 + n) return undefined
  try {
    const meta = JSON.parse(buf.subarray(4, 4 + n).toString('utf8')) as Omit<RenderedPage, 'body'>
    if (typeof meta.etag !== 'string' || !Array.isArray(meta.tags) || typeof meta.renderedAt !== 'number') return undefined
    return { ...meta, body: Buffer.from(buf.subarray(4 + n)) }
  } catch {
    return undefined
  }
}
