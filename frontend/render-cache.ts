/**
 * The render cache: pages this frontend rendered, kept so a flash crowd on one
 * article costs one render, not one per request.
 *
 * - Level 1: an in-process LRU bounded by bytes (design §2.7), indexed by tag.
 * - Level 2 (optional): Redis, shared by every frontend, so a page rendered
 *   by one is a hit for the others. Redis being slow or down only costs hits:
 *   reads have a short deadline and failures fall through to rendering.
 * - Invalidation: the bus events the backend and the cache layer use
 *   (surrogate keys; URL paths and bans from PURGE/BAN at a cache node). A
 *   render that was running while one of its keys was invalidated is not
 *   stored (it may have read the old data).
 *
 * Level 2 invalidates by generations, not by sets of members: every tag has a
 * counter (`gen:<tag>`), a stored page records the counters of its tags as
 * they were when it was written, and a purge is one INCR per tag — O(1),
 * atomic, nothing to read first and nothing a concurrent write can slip past.
 * A read (one Lua script) returns the page only if every counter still
 * matches. Each frontend bumps the counters of every event it applies, so a
 * page a frontend wrote before applying an event is dead once it does; and a
 * page another frontend wrote before *it* applied an event this frontend has
 * already applied is refused here by bus position (the writer's position at
 * render start is stored with the page). Pages and counters expire: pages by
 * their own lifetime (at most `sharedMaxTtlMs`), counters after that long
 * without a purge, so nothing in Redis grows without bound; only 200 answers
 * are shared (a flood of random 404 URLs stays in the byte-bounded level 1).
 *
 * Redis Cluster is not supported: the read script looks at the counters a
 * page names, which are not declared keys.
 */
import { LRUCache } from 'lru-cache'
import type { Redis } from 'ioredis'
import { compareBusIds } from '../common/bus-position.js'

export interface RenderedPage {
  status: number
  contentType: string
  body: Buffer
  /** Strong validator of `body` (RFC 9110 §8.8.3). */
  etag: string
  /** Surrogate keys the page shows. */
  tags: string[]
  cacheControl: string
  /** The CDN's lifetime (RFC 9213 §3), on shareable pages only. */
  cdnCacheControl?: string
  /** Clock time of the render (ms). */
  renderedAt: number
  /** How long the render cache may keep it (ms). */
  ttlMs: number
  /** Bus position of the frontend that rendered it, taken when the render started. */
  position?: string
}

export interface RenderCacheOptions {
  maxBytes: number
  redis?: Redis
  /** Prefix of level-2 keys. */
  prefix?: string
  /** Deadline of one level-2 read (ms). */
  redisTimeoutMs?: number
  /** Longest a page is kept in level 2 (ms); generation counters live this long after their last purge. */
  sharedMaxTtlMs?: number
  /** This frontend's bus position (the id of the newest event it applied). */
  busPosition?: () => string | undefined
  now?: () => number
  onError?: (err: unknown) => void
}

/** A render's ticket: what it must check before storing. */
export interface RenderToken { seq: number, at: number, position: string | undefined }

/** When and at which bus position something was invalidated here. */
interface Mark { seq: number, at: number, position: string | undefined }

const ENTRY_OVERHEAD = 256
/** Generation tag every shared page depends on: bumped by bans and bus gaps. */
const EPOCH = '*'

/** The internal tag of a URL path: PURGE of a path drops every query variant of it. */
export function pathTag (path: string): string { return `url:${path}` }
function pathOf (key: string): string { const q = key.indexOf('?'); return q === -1 ? key : key.slice(0, q) }

/**
 * Stores a page with the generations its tags have now (KEYS[2..]). A
 * counter that will outlive the page is extended so it cannot expire, restart
 * from zero and come back to the value the page recorded.
 */
const SET_SCRIPT = `
local ttl = tonumber(ARGV[1])
local gens = {}
for i = 2, #KEYS do
  local g = redis.call('GET', KEYS[i])
  gens[#gens + 1] = g or '0'
  if g then
    local left = redis.call('PTTL', KEYS[i])
    if left >= 0 and left < ttl then redis.call('PEXPIRE', KEYS[i], ttl) end
  end
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'v', ARGV[2], 't', ARGV[3], 'g', table.concat(gens, '\\n'))
redis.call('PEXPIRE', KEYS[1], ttl)
return 1
`

/** Returns the page only if every recorded generation is still current; drops it otherwise. */
const GET_SCRIPT = `
local e = redis.call('HMGET', KEYS[1], 'v', 't', 'g')
if not e[1] then return false end
local tags, gens = {}, {}
for t in string.gmatch(e[2] or '', '[^\\n]+') do tags[#tags + 1] = t end
for g in string.gmatch(e[3] or '', '[^\\n]+') do gens[#gens + 1] = g end
if #tags == 0 or #tags ~= #gens then return false end
for i = 1, #tags do
  if (redis.call('GET', ARGV[1] .. tags[i]) or '0') ~= gens[i] then
    redis.call('DEL', KEYS[1])
    return false
  end
end
return e[1]
`

type ScriptedRedis = Redis & {
  renderCacheSet (...args: Array<string | number | Buffer>): Promise<number>
  renderCacheGetBuffer (key: string, genPrefix: string): Promise<Buffer | null>
}

export class RenderCache {
  readonly #l1: LRUCache<string, RenderedPage> | undefined
  readonly #redis: ScriptedRedis | undefined
  readonly #prefix: string
  readonly #redisTimeoutMs: number
  readonly #sharedMaxTtlMs: number
  readonly #busPosition: () => string | undefined
  readonly #now: () => number
  readonly #onError: (err: unknown) => void
  #seq = 0
  /** Last invalidation of each tag (bounded: only renders in flight and level-2 reads need it). */
  readonly #tagMarks = new LRUCache<string, Mark>({ max: 100_000 })
  /** Tag → keys of level-1 pages showing it, so a purge touches only what it must. */
  readonly #byTag = new Map<string, Set<string>>()
  /** Everything rendered before this mark is invalid (bus gap). */
  #cleared: Mark | undefined
  /** Bans by URL pattern, for renders in flight and level-2 reads (bounded). */
  readonly #bans: Array<{ re: RegExp } & Mark> = []

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
    this.#prefix = options.prefix ?? 'flashcrowd:render:v2:'
    this.#redisTimeoutMs = options.redisTimeoutMs ?? 50
    this.#sharedMaxTtlMs = options.sharedMaxTtlMs ?? 3_600_000
    this.#busPosition = options.busPosition ?? (() => undefined)
    this.#onError = options.onError ?? (() => {})
    if (options.redis) {
      const redis = options.redis as ScriptedRedis
      // defineCommand is idempotent per name; several caches may share one connection.
      if (typeof redis.renderCacheSet !== 'function') redis.defineCommand('renderCacheSet', { lua: SET_SCRIPT })
      if (typeof redis.renderCacheGetBuffer !== 'function') redis.defineCommand('renderCacheGet', { numberOfKeys: 1, lua: GET_SCRIPT })
      this.#redis = redis
    }
  }

  get enabled (): boolean { return this.#l1 !== undefined }
  get size (): number { return this.#l1?.size ?? 0 }
  get bytes (): number { return this.#l1?.calculatedSize ?? 0 }

  /** Key of a page in level 2 (for tests and operators). */
  sharedKey (key: string): string { return `${this.#prefix}page:${key}` }
  /** Key of a tag's generation counter in level 2. */
  generationKey (tag: string): string { return `${this.#prefix}gen:${tag}` }

  /** Take before reading the database for a render. */
  begin (): RenderToken { return { seq: this.#seq, at: this.#now(), position: this.#busPosition() } }

  /** Whether anything the page at `key` shows was invalidated since `token`. */
  invalidatedSince (token: RenderToken, tags: readonly string[], key?: string): boolean {
    if (this.#cleared && this.#cleared.seq > token.seq) return true
    for (const tag of this.#allTags(tags, key)) {
      const s = this.#tagMarks.get(tag)
      if (s && s.seq > token.seq) return true
    }
    if (key !== undefined) for (const b of this.#bans) if (b.seq > token.seq && b.re.test(key)) return true
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
    if (age >= page.ttlMs || this.#staleByLocalEvents(key, page) || !acceptShared(page)) return undefined
    this.#store(key, page, page.ttlMs - Math.max(0, age))
    return { page, level: 2 }
  }

  /** Stores a render unless something it shows was invalidated while it ran; returns whether it was stored. */
  set (key: string, page: RenderedPage, token: RenderToken): boolean {
    if (!this.#l1 || page.ttlMs <= 0) return false
    if (this.invalidatedSince(token, page.tags, key)) return false
    page.position ??= token.position
    if (!this.#store(key, page, page.ttlMs)) return false
    // Shared only when it is a page someone asked for by a real address: a 404 (any URL can be made up) stays local.
    if (this.#redis && page.status === 200) void this.#setShared(key, page)
    return true
  }

  /** Drops every page tagged with one of `keys` (here and in level 2); `position`: the bus event's id. */
  invalidateKeys (keys: readonly string[], position?: string): number {
    const mark = this.#mark(position)
    const wanted = new Set(keys)
    for (const k of wanted) this.#tagMarks.set(k, mark)
    let dropped = 0
    if (this.#l1) {
      for (const tag of wanted) {
        const set = this.#byTag.get(tag)
        if (!set) continue
        for (const key of [...set]) if (this.#l1.delete(key)) dropped++
        this.#byTag.delete(tag)
      }
    }
    if (this.#redis && wanted.size > 0) this.#bump([...wanted])
    return dropped
  }

  /**
   * Drops one URL path, every query variant (a PURGE of a URL at a cache
   * node). Exact, through the path's internal tag: no pattern matching.
   */
  invalidatePath (path: string, position?: string): number {
    return this.invalidateKeys([pathTag(pathOf(path))], position)
  }

  /** Drops every page whose key (path and query) matches; level 2 as a whole (bans are rare). */
  ban (pattern: RegExp, position?: string): number {
    const mark = this.#mark(position)
    this.#bans.push({ re: pattern, ...mark })
    if (this.#bans.length > 1000) this.#bans.shift()
    let dropped = 0
    if (this.#l1) {
      for (const key of [...this.#l1.keys()]) {
        if (pattern.test(key)) { this.#l1.delete(key); dropped++ }
      }
    }
    if (this.#redis) this.#bump([EPOCH])
    return dropped
  }

  /** Forgets everything rendered before now (a gap in the bus: events may have been missed). */
  clear (): void {
    // The position before the gap: pages rendered at or before it may miss what the gap hid.
    this.#cleared = this.#mark(this.#busPosition())
    this.#bans.length = 0
    this.#l1?.clear()
    if (this.#redis) this.#bump([EPOCH])
  }

  #mark (position: string | undefined): Mark {
    return { seq: ++this.#seq, at: this.#now(), position }
  }

  /** The page's tags plus the internal tag of its path. */
  #allTags (tags: readonly string[], key: string | undefined): readonly string[] {
    return key === undefined ? tags : [...tags, pathTag(pathOf(key))]
  }

  #store (key: string, page: RenderedPage, ttl: number): boolean {
    this.#l1!.set(key, page, { ttl })
    if (!this.#l1!.has(key)) return false // larger than the whole cache: not stored
    for (const tag of this.#allTags(page.tags, key)) {
      let set = this.#byTag.get(tag)
      if (!set) { set = new Set(); this.#byTag.set(tag, set) }
      set.add(key)
    }
    return true
  }

  #unindex (key: string, tags: readonly string[]): void {
    for (const tag of this.#allTags(tags, key)) {
      const set = this.#byTag.get(tag)
      if (!set) continue
      set.delete(key)
      if (set.size === 0) this.#byTag.delete(tag)
    }
  }

  /**
   * Whether `page` (from level 2) predates an invalidation this frontend
   * applied. By bus position when both are known (no clocks compared across
   * machines); by time otherwise.
   */
  #before (page: RenderedPage, mark: Mark, inclusive = false): boolean {
    if (mark.position !== undefined) {
      if (page.position === undefined) return true
      const c = compareBusIds(page.position, mark.position)
      if (c !== undefined) return inclusive ? c <= 0 : c < 0
    }
    return page.renderedAt <= mark.at
  }

  #staleByLocalEvents (key: string, page: RenderedPage): boolean {
    // A gap's mark is the last position seen before it: a page rendered there may miss what the gap hid.
    if (this.#cleared && this.#before(page, this.#cleared, true)) return true
    for (const tag of this.#allTags(page.tags, key)) {
      const mark = this.#tagMarks.get(tag)
      if (mark && this.#before(page, mark)) return true
    }
    for (const b of this.#bans) if (b.re.test(key) && this.#before(page, b)) return true
    return false
  }

  async #getShared (key: string): Promise<RenderedPage | undefined> {
    const redis = this.#redis!
    let timer: NodeJS.Timeout | undefined
    try {
      const deadline = new Promise<null>((resolve) => { timer = setTimeout(() => resolve(null), this.#redisTimeoutMs) })
      const read = redis.renderCacheGetBuffer(this.sharedKey(key), this.generationKey(''))
      read.catch(() => {}) // a late failure after the deadline is nobody's business
      const buf = await Promise.race([read, deadline])
      return buf ? decode(buf) : undefined
    } catch (err) {
      this.#onError(err)
      return undefined
    } finally {
      clearTimeout(timer)
    }
  }

  async #setShared (key: string, page: RenderedPage): Promise<void> {
    const tags = [EPOCH, ...this.#allTags(page.tags, key)]
    const ttl = Math.max(1, Math.min(page.ttlMs, this.#sharedMaxTtlMs))
    try {
      await this.#redis!.renderCacheSet(1 + tags.length, this.sharedKey(key), ...tags.map((t) => this.generationKey(t)), ttl, encode(page), tags.join('\n'))
    } catch (err) {
      this.#onError(err)
    }
  }

  /**
   * A purge in level 2: one INCR per tag. The counter lives as long as any
   * page may (pages are kept at most `sharedMaxTtlMs`), so a page can never
   * see its recorded value come back.
   */
  #bump (tags: readonly string[]): void {
    const multi = this.#redis!.pipeline()
    for (const tag of tags) {
      const k = this.generationKey(tag)
      multi.incr(k).pexpire(k, this.#sharedMaxTtlMs + 60_000)
    }
    multi.exec().catch((err: unknown) => { this.#onError(err) })
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
    if (typeof meta.etag !== 'string' || !Array.isArray(meta.tags) || typeof meta.renderedAt !== 'number' || typeof meta.ttlMs !== 'number') return undefined
    if (meta.position !== undefined && typeof meta.position !== 'string') return undefined
    return { ...meta, body: Buffer.from(buf.subarray(4 + n)) }
  } catch {
    return undefined
  }
}
