/**
 * Sharing fetched objects between the workers of one node (CACHE_WORKERS > 1).
 *
 * Each worker keeps its own store (bounded by CACHE_MAX_BYTES, per worker).
 * Without sharing, a page fetched by worker A is a miss on worker B, and B
 * fetches it from the origin again. So a worker that stores an object it
 * fetched (a fresh fetch, or a revalidation that updated it) sends a copy to
 * the cluster primary, which relays it to every other worker; each inserts it
 * into its own store — unless an invalidation that matches it was applied
 * there at or after the object's fetch started (the same check an in-flight
 * fetch makes before storing, ban.ts), so a purge that reached the sibling
 * before the share can never be undone by it; or unless the sibling already
 * holds a copy at least as new.
 *
 * The messages are separate from the invalidation bus (their own tag). The
 * primary sets `serialization: 'advanced'` so bodies travel as binary.
 */
import type { Worker } from 'node:cluster'
import type { InvalidationLog } from './ban.js'
import type { CacheStore } from './store.js'
import type { PolicyClass } from './freshness.js'
import { deserializeObject, type SharedObject } from './object.js'

export type ApplyOutcome = 'stored' | 'invalidated' | 'older'

export interface ApplySharedDeps {
  store: CacheStore
  log: InvalidationLog
  now: () => number
  Policy: PolicyClass
}

/** Inserts an object a sibling fetched, unless invalidated here since its fetch started or older than ours. */
export function applyShared (deps: ApplySharedDeps, s: SharedObject): ApplyOutcome {
  // The check the store path makes for in-flight fetches (fetch.ts store()):
  // anything matching that was invalidated here at or after the fetch started.
  if (deps.log.invalidatedSince(s.fetchStarted, s, deps.now())) return 'invalidated'
  const have = deps.store.get(s.key)
  if (have !== undefined && (have.fetchStarted > s.fetchStarted || (have.fetchStarted === s.fetchStarted && have.responseTime >= s.responseTime))) return 'older'
  // The sibling's store admitted it on the reads it saw (admission.ts); it is not tested again here.
  deps.store.put(deserializeObject(s, deps.Policy), { skipAdmission: true })
  return 'stored'
}

const TAG = '__flashcrowdShare'
export interface ShareEnvelope { [TAG]: 'object', object: SharedObject }

export function isShareEnvelope (m: unknown): m is ShareEnvelope {
  return m !== null && typeof m === 'object' && (m as Record<string, unknown>)[TAG] === 'object' &&
    typeof (m as { object?: unknown }).object === 'object' && (m as { object: unknown }).object !== null
}

/** How an app sends its stored objects to siblings and hears theirs. */
export interface ShareChannel {
  send (o: SharedObject): void
  subscribe (handler: (o: SharedObject) => void): () => void
}

type IpcEnd = Pick<NodeJS.Process, 'send' | 'on' | 'off'> & { connected?: boolean }

/** Worker side: sends to the primary over the IPC channel, receives what it relays. */
export function ipcShareChannel (end: IpcEnd = process): ShareChannel {
  return {
    send (object) {
      if (typeof end.send !== 'function' || end.connected === false) return
      const envelope: ShareEnvelope = { [TAG]: 'object', object }
      // Best effort: a share that fails to send only costs the sibling a miss.
      try { end.send(envelope, undefined, {}, () => {}) } catch { /* channel closing */ }
    },
    subscribe (handler) {
      const onMessage = (m: unknown) => { if (isShareEnvelope(m)) handler(m.object) }
      end.on('message', onMessage)
      return () => { end.off('message', onMessage) }
    }
  }
}

/** Primary side: relays each share to every other worker (never back to its sender). */
export function relayShares () {
  const workers = new Set<Worker>()
  return {
    attach (worker: Worker) {
      workers.add(worker)
      const onMessage = (m: unknown) => {
        if (!isShareEnvelope(m)) return
        for (const w of workers) {
          if (w === worker || !w.isConnected()) continue
          try { w.send(m as never) } catch { /* the worker is going away */ }
        }
      }
      worker.on('message', onMessage)
      worker.once('exit', () => { workers.delete(worker); worker.off('message', onMessage) })
    },
    close () { workers.clear() }
  }
}
