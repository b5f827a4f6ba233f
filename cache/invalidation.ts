/**
 * Invalidation: PURGE (one URL, all variants), tag purge (Surrogate-Key),
 * soft purge (mark stale, keep for the stale windows), BAN (URL regex), the
 * invalidation a successful unsafe request implies (RFC 9111 §4.4), and the
 * bus that carries all of them to every cache node (design §2.3).
 */
import { createHash, timingSafeEqual } from 'node:crypto'
import type { Bus, BusEvent, BusMessage } from '../common/bus.js'
import { parseSurrogateKeys } from '../common/surrogate-keys.js'
import { compileBan, type InvalidationLog, type Matcher } from './ban.js'
import type { CacheStore, CachedObject } from './store.js'

export type AuthResult = 'ok' | 'missing' | 'wrong'

const digest = (s: string) => createHash('sha256').update(s).digest()

/**
 * Bearer token check in constant time: both sides are hashed first so the
 * comparison takes as long whatever the length of the guess.
 */
export function authorize (authorization: string | undefined, token: string | undefined): AuthResult {
  if (!authorization) return 'missing'
  const m = /^Bearer\s+(\S+)\s*$/i.exec(authorization)
  if (!m) return 'missing'
  // No token configured: the endpoints refuse everything (config.ts).
  if (!token) return 'wrong'
  return timingSafeEqual(digest(m[1]), digest(token)) ? 'ok' : 'wrong'
}

/** Turns an admin request (PURGE/BAN with their headers) into the bus event it stands for. */
export function eventFromRequest (method: string, url: string, headers: Record<string, string | string[] | undefined>): BusEvent {
  const one = (name: string) => { const v = headers[name]; return Array.isArray(v) ? v.join(' ') : v }
  const soft = /^(1|true|yes)$/i.test(one('soft') ?? '')
  const banUrl = one('ban-url')
  if (method === 'BAN' || banUrl !== undefined) {
    if (!banUrl) throw new Error('BAN needs a Ban-Url header with a regular expression')
    compileBan(banUrl) // fail here with a 400, not later on every node
    return { kind: 'ban', pattern: banUrl }
  }
  const keyHeader = one('surrogate-key')
  if (keyHeader !== undefined) {
    const keys = parseSurrogateKeys(keyHeader)
    if (keys.length === 0) throw new Error('Surrogate-Key names no valid key')
    return soft ? { kind: 'keys', keys, soft } : { kind: 'keys', keys }
  }
  if (!url.startsWith('/')) throw new Error('PURGE needs a path')
  return soft ? { kind: 'url', path: url, soft } : { kind: 'url', path: url }
}

export interface ApplyDeps {
  store: CacheStore
  log: InvalidationLog
  now: () => number
}

/** Marks an object stale now without dropping it (soft purge): stale windows still apply. */
function markStale (o: CachedObject, now: number): void {
  if (o.freshUntil > now) o.freshUntil = now
  o.headsSecond = -1 // the ttl in Cache-Status changed
}

/**
 * Applies one event to this node's store; returns how many objects it
 * touched. Every event is logged so in-flight fetches do not store what it
 * invalidated.
 */
export function applyEvent (deps: ApplyDeps, event: BusEvent): number {
  const now = deps.now()
  const { store } = deps
  let keys: string[]
  let matches: Matcher
  switch (event.kind) {
    case 'url': {
      keys = store.keysForUrl(event.path, event.host)
      matches = (o) => o.url === event.path && (event.host === undefined || o.host === event.host)
      break
    }
    case 'keys': {
      const set = new Set<string>()
      for (const tag of event.keys) for (const k of store.keysForTag(tag)) set.add(k)
      keys = [...set]
      const wanted = new Set(event.keys)
      matches = (o) => o.tags.some((t) => wanted.has(t))
      break
    }
    case 'ban': {
      let re: RegExp
      try { re = compileBan(event.pattern) } catch { return 0 }
      // A ban applies to what is stored now, not to what is stored later.
      matches = (o) => o.storedAt <= now && re.test(o.url)
      keys = []
      for (const o of store.values()) if (matches(o)) keys.push(o.key)
      break
    }
  }
  deps.log.record(now, matches)
  const soft = event.kind !== 'ban' && event.soft === true
  for (const key of keys) {
    if (soft) {
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
  const matches: Matcher = (o) => o.storedAt <= now
  deps.log.record(now, matches)
  const keys: string[] = []
  for (const o of deps.store.values()) if (matches(o)) keys.push(o.key)
  for (const k of keys) deps.store.delete(k)
  return keys.length
}

/** RFC 9111 §4.4: URIs a successful unsafe request invalidates (target, Location, Content-Location on the same host). */
export function unsafeInvalidationTargets (host: string, url: string, status: number, location: string | undefined, contentLocation: string | undefined): string[] {
  if (status < 200 || status >= 400) return []
  const out = new Set<string>([url])
  for (const ref of [location, contentLocation]) {
    if (!ref) continue
    try {
      const u = new URL(ref, `http://${host}${url}`)
      // "MUST NOT invalidate ... if the host part is different" (§4.4).
      if (u.host === host) out.add(u.pathname + u.search)
    } catch { /* unparsable reference: nothing to invalidate */ }
  }
  return [...out]
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
