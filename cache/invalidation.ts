/**
 * Applying invalidations to this node's store: one URL (all variants), tags
 * (Surrogate-Key), soft purges (mark stale, keep for the stale windows), bans
 * (URL regex), and the ban of everything after a bus gap; and the bus
 * subscription that applies every node's and the backend's events here
 * (design §2.3). Admin requests that cause them are answered in purge.ts.
 */
import type { Bus, BusEvent, BusMessage } from '../common/bus.js'
import { compileBan, type InvalidationLog, type Matcher } from './ban.js'
import type { CacheStore, CachedObject } from './store.js'

export interface ApplyDeps {
  store: CacheStore
  log: InvalidationLog
  now: () => number
}

/** Marks an object stale now without dropping it (soft purge): stale windows still apply. */
function markStale (o: CachedObject, now: number): void {
  if (o.freshUntil > now) o.freshUntil = now
  o.heads.second = -1 // the ttl in Cache-Status changed
}

/**
 * Applies one event to this node's store; returns how many objects it
 * touched. Every event is logged so in-flight fetches do not store what it
 * invalidated.
 */
/** What an event applied at `at` invalidates (undefined: a ban whose expression does not compile). */
export function matcherFor (event: BusEvent, at: number): Matcher | undefined {
  switch (event.kind) {
    case 'url': return (o) => o.url === event.path && (event.host === undefined || o.host === event.host)
    case 'keys': {
      const wanted = new Set(event.keys)
      return (o) => o.tags.some((t) => wanted.has(t))
    }
    case 'ban': {
      let re: RegExp
      try { re = compileBan(event.pattern) } catch { return undefined }
      // A ban applies to every page fetched until then, whether it is stored
      // already or still in flight (it is stored after the ban, but its
      // content predates it); not to pages fetched later.
      return (o) => o.fetchStarted <= at && re.test(o.url)
    }
  }
}

export function applyEvent (deps: ApplyDeps, event: BusEvent): number {
  const now = deps.now()
  const { store } = deps
  const matches = matcherFor(event, now)
  if (matches === undefined) return 0
  // A store shared by several workers keeps the event too, before removing
  // anything: a sibling's fetch that started earlier cannot store its page
  // after this (shared-store.ts put).
  store.noteInvalidation?.(now, event)
  let keys: string[]
  switch (event.kind) {
    case 'url': keys = store.keysForUrl(event.path, event.host); break
    case 'keys': {
      const set = new Set<string>()
      for (const tag of event.keys) for (const k of store.keysForTag(tag)) set.add(k)
      keys = [...set]
      break
    }
    case 'ban':
      keys = []
      for (const o of store.values()) if (matches(o)) keys.push(o.key)
      break
  }
  deps.log.record(now, matches)
  const soft = event.kind !== 'ban' && event.soft === true
  for (const key of keys) {
    if (soft) {
      if (store.soften !== undefined) { store.soften(key, now); continue }
      const o = store.get(key)
      if (o) markStale(o, now)
    } else {
      store.delete(key)
    }
  }
  return keys.length
}

/** After a bus gap nothing stored before it can be trusted (design §2.3): ban everything stored until now. */
export function banEverything (deps: ApplyDeps): number {
  const now = deps.now()
  // Fetch start, not store time: a fetch in flight across the gap may carry a
  // page rendered before a write whose event we missed.
  const matches: Matcher = (o) => o.fetchStarted <= now
  deps.store.noteInvalidation?.(now, { kind: 'ban', pattern: '' })
  deps.log.record(now, matches)
  const keys: string[] = []
  for (const o of deps.store.values()) if (matches(o)) keys.push(o.key)
  for (const k of keys) deps.store.delete(k)
  return keys.length
}

export interface SubscribeDeps extends ApplyDeps {
  bus: Bus
  onApplied?: (message: BusMessage, touched: number) => void
  onGap?: (since: number, touched: number) => void
}

/** Subscribes this node to the bus: every event from anyone (other nodes, the backend's outbox) is applied here. */
export function subscribeInvalidations (deps: SubscribeDeps): () => void {
  return deps.bus.subscribe((message) => {
    const touched = applyEvent(deps, message.event)
    deps.onApplied?.(message, touched)
  }, {
    onGap: (since) => {
      const touched = banEverything(deps)
      deps.onGap?.(since, touched)
    }
  })
}
