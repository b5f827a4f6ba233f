/**
 * One store for every worker of a node (CACHE_WORKERS > 1): objects live once,
 * in a memory-mapped LMDB environment that all the node's worker processes
 * open (`lmdb`), so
 *   - a page fetched by one worker is a hit on every other (no copies, no
 *     relay over IPC),
 *   - CACHE_MAX_BYTES bounds the node as a whole (one byte count, kept in the
 *     same write transactions as the objects),
 *   - a purge or ban applied by one worker is visible to all at once (the
 *     delete commits before the answer is written).
 * LMDB write transactions are exclusive across processes, so the byte count,
 * the indexes and the eviction queue never disagree.
 *
 * Hit path: a read transaction reset (another process's commit becomes
 * visible), one lookup of the record by key, a version check against this
 * worker's decoded copy of the object's fields (`memo`: fields only, no
 * bodies), and a copy of the body out of the map (a record's bytes are only
 * valid until the next read). The object handed out is a view: the memo'd
 * fields by prototype, the copied bodies as its own.
 *
 * Eviction approximates LRU across processes: a queue ordered by insertion,
 * where objects read since the last flush (once a second per worker) move to
 * its end; TinyLFU admission (admission.ts) guards it against scans, with each
 * worker's sketch counting the reads it served (connections are spread evenly,
 * so each sees a fair sample).
 */
import { createHash } from 'node:crypto'
import { open, type RootDatabase, type Database as LmdbDatabase } from 'lmdb'
import { LRUCache } from 'lru-cache'
import type CachePolicy from 'http-cache-semantics'
import type { CacheStore, CachedObject, PutOptions } from './store.js'
import { varyNamesOf } from './store.js'
import { FrequencySketch } from './admission.js'
import type { PolicyClass } from './freshness.js'
import { policy } from './policy.js'
import { serializeObject, type SharedObject } from './object.js'
import { matcherFor } from './invalidation.js'
import type { BusEvent } from '../common/bus.js'

export interface SharedStoreOptions {
  /** Directory of the LMDB environment (the node's primary creates it; every worker opens it). */
  path: string
  maxBytes: number
  Policy: PolicyClass
  onEvict?: (o: { key: string, size: number }) => void
  onReject?: (o: CachedObject) => void
  admission?: boolean
  sketchSeed?: number
  /** How often this worker's reads reorder the eviction queue (ms). */
  touchIntervalMs?: number
  /**
   * Bytes of recently read objects this worker keeps decoded, bodies
   * included, so a hit on a hot page copies and allocates nothing (counted
   * against the node's budget by app.ts). Default 1 MB.
   */
  memoBytes?: number
  /** Bytes this worker allocated and dropped (read copies, stored objects): app.ts hands them to the reclaimer. */
  onGarbage?: (bytes: number) => void
}

/** Stored fields of an object (everything but bodies and the per-process parts). */
type Meta = Omit<SharedObject, 'bodies'>

interface Memo { version: number, object: CachedObject, bodies: CachedObject['bodies'], bytes: number }

/** [id, size, dropAt] in the eviction queue. */
type QueueEntry = [string, number, number]

/**
 * A record in the objects database: a fixed header, then the fields as JSON,
 * then the bodies (identity, gzip, br) one after another. Byte offsets of
 * the header's numbers.
 */
const RECORD = {
  /** float64: the object's version (its store time and a random part). */
  version: 0,
  /** uint32: bytes of the JSON fields. */
  metaLength: 8,
  /** uint32 each: bytes of the identity, gzip and br bodies (0: none). */
  bodyLengths: [12, 16, 20],
  /** Where the JSON fields start. */
  header: 24
} as const
const HEADER = RECORD.header

/**
 * The index database's key spaces, by their first character: one database,
 * so that one write transaction covers an object and every entry naming it.
 */
const IX = {
  /** → total bytes stored */
  bytes: 'b',
  /** → the last eviction-queue sequence number */
  lastSeq: 'n',
  /** + hex sequence → QueueEntry: the eviction queue, oldest first; `queueEnd` bounds its range. */
  queue: 'q',
  queueEnd: 'r',
  /** + object id → its queue sequence */
  seqOf: 's',
  /** + primary key → { vary }: the Vary names of its variants */
  primary: 'p',
  /** + primary key + SEP + object id → variant key */
  variant: 'k',
  /** + URL + SEP + object id → [host, key] (PURGE by URL) */
  url: 'u',
  /** + tag + SEP + object id → key (purge by Surrogate-Key) */
  tag: 't',
  /** + hex time + random → [at, event]: recent invalidations; `invalidationEnd` bounds their range. */
  invalidation: 'i',
  invalidationEnd: 'j'
} as const
/** LMDB keys are at most ~2 KB: longer ones are stored under a hash (the full key is checked on read). */
const MAX_PLAIN_KEY = 400

function shortId (s: string): string {
  return s.length <= MAX_PLAIN_KEY ? s : '#' + createHash('sha256').update(s).digest('base64url')
}

function hex (n: number, digits: number): string { return Math.max(0, Math.floor(n)).toString(16).padStart(digits, '0') }
function seqKey (seq: number): string { return IX.queue + hex(seq, 14) }
/** How long invalidations are remembered for in-flight fetches (the InvalidationLog's window, ban.ts). */
const INVALIDATION_KEEP_MS = 120_000

const EMPTY = Buffer.alloc(0)
/** Between the parts of an index key (a NUL would be read by LMDB's key encoding as an array separator). */
const SEP = '\x1f'
const SEP_END = '\x20'

export class SharedStore implements CacheStore {
  readonly #env: RootDatabase
  readonly #objects: LmdbDatabase<Buffer, string>
  readonly #index: LmdbDatabase<unknown, string>
  readonly #o: SharedStoreOptions
  readonly #memo: LRUCache<string, Memo>
  readonly #sketch: FrequencySketch | undefined
  readonly #maxSize: number
  readonly #touched = new Set<string>()
  readonly #timer: NodeJS.Timeout

  constructor (options: SharedStoreOptions) {
    this.#o = options
    // noSync: the store is a cache, rebuilt from the origin after a crash; the
    // map is sized for the budget twice over (LMDB reuses freed pages).
    this.#env = open({ path: options.path, noSync: true, noMetaSync: true, maxDbs: 4, mapSize: 2 * options.maxBytes + 64 * 1024 * 1024, compression: false, cache: false })
    this.#objects = this.#env.openDB<Buffer, string>({ name: 'objects', encoding: 'binary', compression: false, cache: false })
    this.#index = this.#env.openDB<unknown, string>({ name: 'index', compression: false, cache: false })
    this.#sketch = options.admission === false ? undefined : new FrequencySketch({ expectedItems: options.maxBytes / 2048, seed: options.sketchSeed })
    this.#maxSize = Math.max(1, options.maxBytes - (this.#sketch?.bytes ?? 0))
    // Recently read objects, decoded, with a copy of their bodies: the hot
    // pages of a flash crowd are served from here without a copy per hit.
    this.#memo = new LRUCache<string, Memo>({
      maxSize: Math.max(64 * 1024, options.memoBytes ?? 1024 * 1024),
      sizeCalculation: (m) => m.bytes,
      dispose: (m) => { options.onGarbage?.(m.bytes) }
    })
    this.#timer = setInterval(() => { this.flushTouches() }, options.touchIntervalMs ?? 1000)
    this.#timer.unref()
  }

  /** Sees what other workers committed since this worker's last read (called once per request). */
  refresh (): void { this.#env.resetReadTxn() }

  lookup (key: string): CachedObject | undefined {
    const id = shortId(key)
    if (this.#sketch !== undefined) this.#sketch.increment(this.#sketch.hash(id))
    const o = this.#read(id, key)
    if (o !== undefined && this.#touched.size < 100_000) this.#touched.add(id)
    return o
  }

  get (key: string): CachedObject | undefined { return this.#read(shortId(key), key) }

  #read (id: string, key: string): CachedObject | undefined {
    const buf = this.#objects.getBinaryFast(id)
    if (buf === undefined) { this.#memo.delete(id); return undefined }
    const version = buf.readDoubleLE(RECORD.version)
    let memo = this.#memo.get(id)
    if (memo === undefined || memo.version !== version) {
      memo = this.#memoize(buf, version)
      // Objects larger than the memo can hold are still served (a copy each time).
      if (memo.bytes <= this.#memo.maxSize) this.#memo.set(id, memo)
      else this.#o.onGarbage?.(memo.bytes)
    }
    if (memo.object.key !== key) return undefined // a hash collision of two long keys
    const view = Object.create(memo.object) as CachedObject
    view.bodies = memo.bodies
    return view
  }

  /** Decodes a record: its fields, and its bodies copied out of the map (a record's bytes are only valid until the next read). */
  #memoize (buf: Buffer, version: number): Memo {
    const object = this.#decode(buf)
    const metaLen = buf.readUInt32LE(RECORD.metaLength)
    let off = HEADER + metaLen
    const bodies: CachedObject['bodies'] = { identity: EMPTY }
    const lens = RECORD.bodyLengths.map((at) => buf.readUInt32LE(at))
    const names = ['identity', 'gzip', 'br'] as const
    for (let i = 0; i < 3; i++) {
      if (i > 0 && lens[i] === 0) continue
      const b = Buffer.allocUnsafeSlow(lens[i])
      buf.copy(b, 0, off, off + lens[i])
      bodies[names[i]] = b
      off += lens[i]
    }
    return { version, object, bodies, bytes: object.size }
  }

  #decode (buf: Buffer): CachedObject {
    const metaLen = buf.readUInt32LE(RECORD.metaLength)
    const meta = JSON.parse(buf.toString('utf8', HEADER, HEADER + metaLen)) as Meta
    const fromObject = (this.#o.Policy as unknown as { fromObject (obj: object): CachePolicy }).fromObject
    return {
      ...meta,
      policy: fromObject.call(this.#o.Policy, meta.policy),
      bodies: { identity: EMPTY },
      // Orders requests within one process only: an object from the shared store is not ordered against ours.
      fetchSequence: 0,
      heads: { second: -1 }
    }
  }

  #encode (o: CachedObject, version: number): Buffer {
    // The fields as they travel between processes (object.ts), without the bodies, which follow them.
    const { bodies: _bodies, ...meta } = serializeObject(o)
    const json = Buffer.from(JSON.stringify(meta))
    const { identity, gzip, br } = o.bodies
    const out = Buffer.allocUnsafe(HEADER + json.length + identity.length + (gzip?.length ?? 0) + (br?.length ?? 0))
    out.writeDoubleLE(version, RECORD.version)
    out.writeUInt32LE(json.length, RECORD.metaLength)
    out.writeUInt32LE(identity.length, RECORD.bodyLengths[0])
    out.writeUInt32LE(gzip?.length ?? 0, RECORD.bodyLengths[1])
    out.writeUInt32LE(br?.length ?? 0, RECORD.bodyLengths[2])
    let off = HEADER
    off += json.copy(out, off)
    off += identity.copy(out, off)
    if (gzip) off += gzip.copy(out, off)
    if (br) br.copy(out, off)
    return out
  }

  put (o: CachedObject, options?: PutOptions): boolean {
    if (o.size > this.#maxSize) return false
    const id = shortId(o.key)
    const record = this.#encode(o, Math.random())
    const sketch = this.#sketch
    let rejected = false
    let invalidated = false
    const evicted: Array<{ key: string, size: number }> = []
    this.#env.transactionSync(() => {
      if (options?.since !== undefined && this.#invalidatedSince(options.since, o)) { invalidated = true; return }
      const old = this.#objects.getBinaryFast(id) !== undefined
      let bytes = (this.#index.get(IX.bytes) as number | undefined) ?? 0
      if (old) bytes -= this.#remove(id)
      let need = bytes + o.size - this.#maxSize
      if (need > 0) {
        // The oldest queued objects make room, unless the newcomer is read
        // less often than any of them (TinyLFU; a new version of a stored key is not tested).
        const victims: QueueEntry[] = []
        const tester = !old && options?.skipAdmission !== true ? sketch : undefined
        const f = tester === undefined ? -1 : tester.frequency(tester.hash(id))
        for (const { value } of this.#index.getRange({ start: IX.queue, end: IX.queueEnd })) {
          const entry = value as QueueEntry
          const [victim, victimSize] = entry
          if (tester !== undefined && tester.frequency(tester.hash(victim)) >= f) { rejected = true; break }
          victims.push(entry)
          need -= victimSize
          if (need <= 0) break
        }
        if (rejected) return
        for (const [victim] of victims) {
          const size = this.#remove(victim)
          bytes -= size
          evicted.push({ key: victim, size })
        }
      }
      const seq = ((this.#index.get(IX.lastSeq) as number | undefined) ?? 0) + 1
      this.#index.putSync(IX.lastSeq, seq)
      this.#objects.putSync(id, record)
      this.#index.putSync(seqKey(seq), [id, o.size, o.freshUntil + policy.keepMs(o)] satisfies QueueEntry)
      this.#index.putSync(IX.seqOf + id, seq)
      this.#index.putSync(IX.primary + shortId(o.primary), { vary: varyNamesOf(o) })
      this.#index.putSync(IX.variant + shortId(o.primary) + SEP + id, o.key)
      this.#index.putSync(IX.url + shortId(o.url) + SEP + id, [o.host, o.key])
      for (const tag of o.tags) this.#index.putSync(IX.tag + shortId(tag) + SEP + id, o.key)
      this.#index.putSync(IX.bytes, bytes + o.size)
    })
    for (const v of evicted) this.#o.onEvict?.(v)
    // The caller's object and its encoding die once delivered; the store keeps the copy in the map.
    this.#o.onGarbage?.(o.size + record.length)
    if (invalidated) { options?.onInvalidated?.(); return false }
    if (rejected) { this.#o.onReject?.(o); return false }
    this.#memo.delete(id)
    return true
  }

  /** Whether an invalidation noted by any worker at or after `since` matches `o` (inside the put's transaction). */
  #invalidatedSince (since: number, o: CachedObject): boolean {
    for (const { value } of this.#index.getRange({ start: IX.invalidation + hex(since, 12), end: IX.invalidationEnd })) {
      const [at, event] = value as [number, BusEvent]
      if (matcherFor(event, at)?.(o) === true) return true
    }
    // Older than the notes reach back: a fetch that long is not trusted either (ban.ts keeps the same window).
    return Date.now() - since > INVALIDATION_KEEP_MS
  }

  noteInvalidation (at: number, event: BusEvent): void {
    this.#env.transactionSync(() => {
      for (const key of this.#index.getKeys({ start: IX.invalidation, end: IX.invalidation + hex(at - INVALIDATION_KEEP_MS, 12) })) this.#index.removeSync(key)
      this.#index.putSync(IX.invalidation + hex(at, 12) + hex(Math.floor(Math.random() * 0xffffffff), 8), [at, event])
    })
  }

  /** Removes a record and its index entries inside a write transaction; returns its size (0 when absent). */
  #remove (id: string): number {
    const buf = this.#objects.getBinary(id)
    if (buf === undefined) return 0
    const metaLen = buf.readUInt32LE(RECORD.metaLength)
    const meta = JSON.parse(buf.toString('utf8', HEADER, HEADER + metaLen)) as Meta
    const seq = this.#index.get(IX.seqOf + id) as number | undefined
    if (seq !== undefined) this.#index.removeSync(seqKey(seq))
    this.#index.removeSync(IX.seqOf + id)
    const pid = shortId(meta.primary)
    this.#index.removeSync(IX.variant + pid + SEP + id)
    let variants = false
    for (const _ of this.#index.getKeys({ start: IX.variant + pid + SEP, end: IX.variant + pid + SEP_END, limit: 1 })) variants = true
    if (!variants) this.#index.removeSync(IX.primary + pid)
    this.#index.removeSync(IX.url + shortId(meta.url) + SEP + id)
    for (const tag of meta.tags) this.#index.removeSync(IX.tag + shortId(tag) + SEP + id)
    this.#objects.removeSync(id)
    return meta.size
  }

  delete (key: string): boolean {
    const id = shortId(key)
    let size = 0
    this.#env.transactionSync(() => {
      size = this.#remove(id)
      if (size > 0) this.#index.putSync(IX.bytes, Math.max(0, ((this.#index.get(IX.bytes) as number | undefined) ?? 0) - size))
    })
    this.#memo.delete(id)
    return size > 0
  }

  /** Soft purge (invalidation.ts): the stored object becomes stale now, for every worker. */
  soften (key: string, now: number): boolean {
    const id = shortId(key)
    let done = false
    this.#env.transactionSync(() => {
      const buf = this.#objects.getBinary(id)
      if (buf === undefined) return
      const { object: o, bodies } = this.#memoize(buf, 0)
      if (o.freshUntil <= now) return
      o.freshUntil = now
      o.bodies = bodies
      this.#objects.putSync(id, this.#encode(o, Math.random()))
      done = true
    })
    this.#memo.delete(id)
    return done
  }

  varyOf (primary: string): string[] | null | undefined {
    const entry = this.#index.get(IX.primary + shortId(primary)) as { vary: string[] | null } | undefined
    return entry?.vary
  }

  keysForUrl (url: string, host?: string): string[] {
    const out: string[] = []
    const prefix = IX.url + shortId(url) + SEP
    for (const { value } of this.#index.getRange({ start: prefix, end: IX.url + shortId(url) + SEP_END })) {
      const [h, key] = value as [string, string]
      if (host === undefined || h === host) out.push(key)
    }
    return out
  }

  keysForTag (tag: string): string[] {
    const out: string[] = []
    const t = shortId(tag)
    for (const { value } of this.#index.getRange({ start: IX.tag + t + SEP, end: IX.tag + t + SEP_END })) out.push(value as string)
    return out
  }

  /** Every stored object's fields (bans, the sweep); bodies are not read. */
  * values (): IterableIterator<CachedObject> {
    this.refresh()
    for (const { value } of this.#objects.getRange({})) yield this.#decode(value)
  }

  /** Drops objects past every window they could still be used in (app.ts sweep), from the queue alone. */
  sweep (now: number): number {
    const dead: string[] = []
    this.refresh()
    for (const { value } of this.#index.getRange({ start: IX.queue, end: IX.queueEnd })) {
      const [id, , dropAt] = value as QueueEntry
      if (now >= dropAt) dead.push(id)
    }
    if (dead.length === 0) return 0
    this.#env.transactionSync(() => {
      let freed = 0
      for (const id of dead) freed += this.#remove(id)
      this.#index.putSync(IX.bytes, Math.max(0, ((this.#index.get(IX.bytes) as number | undefined) ?? 0) - freed))
    })
    for (const id of dead) this.#memo.delete(id)
    return dead.length
  }

  /** Moves the objects this worker read since the last flush to the end of the eviction queue. */
  flushTouches (): void {
    if (this.#touched.size === 0) return
    const ids = [...this.#touched]
    this.#touched.clear()
    this.#env.transactionSync(() => {
      let seq = (this.#index.get(IX.lastSeq) as number | undefined) ?? 0
      for (const id of ids) {
        const old = this.#index.get(IX.seqOf + id) as number | undefined
        if (old === undefined) continue
        const entry = this.#index.get(seqKey(old))
        if (entry === undefined) continue
        this.#index.removeSync(seqKey(old))
        seq++
        this.#index.putSync(seqKey(seq), entry)
        this.#index.putSync(IX.seqOf + id, seq)
      }
      this.#index.putSync(IX.lastSeq, seq)
    })
  }

  get bytes (): number { this.refresh(); return (this.#index.get(IX.bytes) as number | undefined) ?? 0 }
  get count (): number { this.refresh(); return (this.#objects.getStats() as { entryCount: number }).entryCount }

  clear (): void {
    this.#env.transactionSync(() => {
      this.#objects.clearSync()
      this.#index.clearSync()
    })
    this.#memo.clear()
  }

  close (): Promise<void> {
    clearInterval(this.#timer)
    return this.#env.close()
  }
}
