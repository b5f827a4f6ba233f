/**
 * Object storage, kept apart from policy (the undici `CacheStore` habit): the
 * state machine decides *what* may be stored and for how long; the store only
 * holds objects, bounds their bytes (design §2.7) and indexes them by URL and
 * surrogate key so invalidations find every variant.
 */
import { LRUCache } from 'lru-cache'
import type CachePolicy from 'http-cache-semantics'
import { FrequencySketch } from './admission.js'
import type { BusEvent } from '../common/bus.js'

/** Content codings a stored body is kept in; chosen per request by `compress.ts`. */
export type Encoding = 'identity' | 'gzip' | 'br'

export interface PreparedHeads { second: number, identity?: string[], gzip?: string[], br?: string[] }

export interface CachedObject {
  /** Full key: primary key plus the normalized Vary values (vary.ts). */
  key: string
  /** Host + request target: every variant of one URL shares it. */
  primary: string
  host: string
  /** Request target (path and query) the object was fetched for. */
  url: string
  status: number
  /** Stored response header fields (lower-case names, hop-by-hop removed). */
  headers: Record<string, string>
  /** The policy object from http-cache-semantics, kept for revalidation (RFC 9111 §4.3). */
  policy: CachePolicy
  /** Bodies by content coding; identity is always present. */
  bodies: { identity: Buffer, gzip?: Buffer, br?: Buffer }
  /** True when `bodies` holds our own compressed variants (we add `Vary: Accept-Encoding`). */
  compressible: boolean
  etag: string | undefined
  lastModified: number | undefined
  tags: string[]
  /** Surrogate-Key is delivered too, for a CDN in front that purges by it (CACHE_DELIVER_SURROGATE_KEY). */
  deliverTags?: true
  /** Clock time the response arrived (RFC 9111 §4.2.3 response_time). */
  responseTime: number
  /**
   * Clock time the fetch that produced (or last revalidated) this object
   * started. Bans compare against it, not against the time it was stored: a
   * page fetched before a ban but stored after it predates the ban (ban.ts).
   */
  fetchStarted: number
  /**
   * Order of that fetch's start among this process's requests (fetch.ts
   * `nextSequence`): clock ticks are too coarse to tell whether a fetch
   * started after a request arrived. 0 for objects from elsewhere.
   */
  fetchSequence: number
  /** corrected_initial_age in seconds (RFC 9111 §4.2.3). */
  initialAge: number
  /** Clock time the object stops being fresh (RFC 9111 §4.2). */
  freshUntil: number
  /** stale-while-revalidate window after `freshUntil` (RFC 5861 §3), ms. */
  swrMs: number
  /** stale-if-error window after `freshUntil` (RFC 5861 §4), ms. */
  sieMs: number
  /** Our own grace after `freshUntil` when the origin allows serving stale, ms. */
  graceMs: number
  /** The request that stored it carried credentials and the response explicitly allowed sharing. */
  explicitlyShared: boolean
  /** `no-cache`/`must-revalidate`-style responses: never served stale, always revalidated (RFC 9111 §4.2.4). */
  mustRevalidate: boolean
  /** The key's hash in the store's frequency sketch (admission.ts), set by the store when it is put. */
  sketchHash?: number
  /**
   * Precomputed response head per encoding for the hit path (headers.ts),
   * with the second (clock) their Age/ttl values were computed for; rebuilt
   * once a second. One mutable holder, so a view of a shared object
   * (shared-store.ts) updates the heads every view of it uses.
   */
  heads: PreparedHeads
  size: number
}

export interface PutOptions {
  /** Insert without the admission test. */
  skipAdmission?: boolean
  /**
   * Shared stores: when the object's fetch started. An invalidation another
   * worker noted since then that matches it keeps it out (`onInvalidated`),
   * checked in the same transaction as the insert.
   */
  since?: number
  onInvalidated?: () => void
}

export interface CacheStore {
  /** A client's read of `key` (the lookup step): it counts towards admission. */
  lookup (key: string): CachedObject | undefined
  /** The cache's own read (invalidation, sharing): counts for nothing. */
  get (key: string): CachedObject | undefined
  /** Stores `object`; false when it was not admitted (or is larger than the whole store). */
  put (object: CachedObject, options?: PutOptions): boolean
  delete (key: string): boolean
  /** The Vary field names last seen for a primary key (null: the URL does not vary). */
  varyOf (primary: string): string[] | null | undefined
  keysForUrl (url: string, host?: string): string[]
  keysForTag (tag: string): string[]
  values (): IterableIterator<CachedObject>
  readonly bytes: number
  readonly count: number
  clear (): void
  /** Shared stores: see what other workers committed (called once per request, before the first read). */
  refresh? (): void
  /** Soft purge of a stored object (shared stores: for every worker); absent: the object is changed in place. */
  soften? (key: string, now: number): boolean
  /** Drops objects past their last usable moment (app.ts); absent: the app scans values(). */
  sweep? (now: number): number
  close? (): Promise<void>
  /** Shared stores: remembers an invalidation for the fetches other workers have in flight (PutOptions.since). */
  noteInvalidation? (at: number, event: BusEvent): void
}

export interface MemoryStoreOptions {
  /** Everything the store keeps: objects and the admission sketch. */
  maxBytes: number
  /** Called for objects pushed out to make room (metrics). */
  onEvict?: (object: CachedObject) => void
  /** Called for new objects the admission test kept out (metrics). */
  onReject?: (object: CachedObject) => void
  /**
   * TinyLFU admission (admission.ts; default on): when the store is full, a
   * new object gets in only if it is read more often than every object it
   * would push out. Off: a plain LRU.
   */
  admission?: boolean
  /** Sketch seed (tests); random by default. */
  sketchSeed?: number
}

/**
 * The sketch is sized for objects of this many bytes on average (a small
 * page; larger objects only mean fewer keys than it can tell apart).
 */
const SKETCH_BYTES_PER_ITEM = 2048

interface PrimaryEntry { vary: string[] | null, keys: Set<string> }

/**
 * Byte-bounded LRU in process memory. `lru-cache` does the eviction
 * (maxSize + sizeCalculation); the maps below are indexes kept in step with it
 * through `dispose`, so they never outgrow the objects they point at.
 */
export class MemoryStore implements CacheStore {
  readonly #lru: LRUCache<string, CachedObject>
  readonly #primaries = new Map<string, PrimaryEntry>()
  readonly #byUrl = new Map<string, Set<string>>()
  readonly #byTag = new Map<string, Set<string>>()
  readonly #sketch: FrequencySketch | undefined
  readonly #maxSize: number
  readonly #onReject: ((o: CachedObject) => void) | undefined

  constructor (options: MemoryStoreOptions) {
    this.#sketch = options.admission === false ? undefined : new FrequencySketch({ expectedItems: options.maxBytes / SKETCH_BYTES_PER_ITEM, seed: options.sketchSeed })
    // The sketch's counters come out of the same budget (design §2.7).
    this.#maxSize = Math.max(1, options.maxBytes - (this.#sketch?.bytes ?? 0))
    this.#onReject = options.onReject
    this.#lru = new LRUCache<string, CachedObject>({
      maxSize: this.#maxSize,
      sizeCalculation: (o) => o.size,
      dispose: (o, _key, reason) => {
        // 'set' with another object: put() already moved the indexes over.
        if (reason === 'set') return
        this.#unindex(o)
        if (reason === 'evict') options.onEvict?.(o)
      }
    })
  }

  lookup (key: string): CachedObject | undefined {
    const o = this.#lru.get(key)
    const sketch = this.#sketch
    // A hit uses the hash kept on the object: O(1), no allocation.
    if (sketch !== undefined) sketch.increment(o?.sketchHash ?? sketch.hash(key))
    return o
  }

  get (key: string): CachedObject | undefined { return this.#lru.get(key) }

  put (object: CachedObject, options?: PutOptions): boolean {
    const old = this.#lru.peek(object.key)
    const sketch = this.#sketch
    if (sketch !== undefined) {
      const hash = object.sketchHash = sketch.hash(object.key)
      // A new version of a stored key replaces it in place; only newcomers are tested.
      if (old === undefined && options?.skipAdmission !== true && !this.#admits(object, sketch, hash)) {
        this.#onReject?.(object)
        return false
      }
    }
    if (old) this.#unindex(old)
    this.#index(object)
    this.#lru.set(object.key, object)
    // lru-cache refuses objects larger than maxSize; keep the indexes honest.
    if (!this.#lru.has(object.key)) { this.#unindex(object); return false }
    return true
  }

  /**
   * TinyLFU's test: the objects LRU would push out to make room (least
   * recently used first, as many as the newcomer's size needs) must all be
   * read less often than the newcomer (`hash`, its place in `sketch`). Ties
   * keep what is stored.
   */
  #admits (o: CachedObject, sketch: FrequencySketch, hash: number): boolean {
    let need = this.#lru.calculatedSize + o.size - this.#maxSize
    if (need <= 0) return true
    if (o.size > this.#maxSize) return false
    const f = sketch.frequency(hash)
    for (const victim of this.#lru.rvalues()) {
      if (victim === undefined) continue
      if (sketch.frequency(victim.sketchHash ?? sketch.hash(victim.key)) >= f) return false
      need -= victim.size
      if (need <= 0) return true
    }
    return true
  }

  delete (key: string): boolean { return this.#lru.delete(key) }

  varyOf (primary: string): string[] | null | undefined { return this.#primaries.get(primary)?.vary }

  keysForUrl (url: string, host?: string): string[] {
    const out: string[] = []
    for (const primary of this.#byUrl.get(url) ?? []) {
      const entry = this.#primaries.get(primary)
      if (!entry) continue
      for (const key of entry.keys) {
        if (host === undefined || this.#lru.peek(key)?.host === host) out.push(key)
      }
    }
    return out
  }

  keysForTag (tag: string): string[] { return [...(this.#byTag.get(tag) ?? [])] }

  values (): IterableIterator<CachedObject> { return this.#lru.values() }

  get bytes (): number { return this.#lru.calculatedSize }
  get count (): number { return this.#lru.size }

  clear (): void { this.#lru.clear() }

  #index (o: CachedObject): void {
    let entry = this.#primaries.get(o.primary)
    if (!entry) {
      entry = { vary: null, keys: new Set() }
      this.#primaries.set(o.primary, entry)
      let urls = this.#byUrl.get(o.url)
      if (!urls) this.#byUrl.set(o.url, urls = new Set())
      urls.add(o.primary)
    }
    entry.vary = varyNamesOf(o)
    entry.keys.add(o.key)
    for (const tag of o.tags) {
      let keys = this.#byTag.get(tag)
      if (!keys) this.#byTag.set(tag, keys = new Set())
      keys.add(o.key)
    }
  }

  #unindex (o: CachedObject): void {
    const entry = this.#primaries.get(o.primary)
    if (entry) {
      entry.keys.delete(o.key)
      if (entry.keys.size === 0) {
        this.#primaries.delete(o.primary)
        const urls = this.#byUrl.get(o.url)
        urls?.delete(o.primary)
        if (urls?.size === 0) this.#byUrl.delete(o.url)
      }
    }
    for (const tag of o.tags) {
      const keys = this.#byTag.get(tag)
      keys?.delete(o.key)
      if (keys?.size === 0) this.#byTag.delete(tag)
    }
  }
}

/** Vary field names of a stored object, lower-case and sorted (vary.ts builds keys from them). */
export function varyNamesOf (o: Pick<CachedObject, 'headers'>): string[] | null {
  const vary = o.headers.vary
  if (!vary) return null
  const names = vary.toLowerCase().split(',').map((s) => s.trim()).filter(Boolean)
  return names.length ? [...new Set(names)].sort() : null
}
