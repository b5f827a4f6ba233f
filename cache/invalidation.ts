/**
 * Invalidation: PURGE (one URL, all variants), tag purge (Surrogate-Key),
 * soft purge (mark stale, keep for the stale windows), BAN (URL regex), the
 * invalidation a successful unsafe request implies (RFC 9111 §4.4), and the
 * bus that carries all of them to every cache node (design §2.3).
 */
import { createHash, timingSafeEqual } from 'node:crypto'
import type { Bus, BusEvent, BusMessage } from '../common/bus.js'
import { parseSurrogateKeys } from '../common/surrogate-keys.js'
import { compileBan, validateBan, type InvalidationLog, type Matcher } from './ban.js'
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
    validateBan(banUrl) // fail here with a 400, not later on every node
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

const TOKEN_CHARS = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/

/** RFC 9110 §5.6.3 OWS: spaces and tabs. */
function isOws (code: number): boolean { return code === 32 || code === 9 }

export type RawHead = { ok: true, target: string, headers: Record<string, string> } | { ok: false, status: 400, message: string }

/**
 * Parses the head of a raw BAN request (node's parser does not know the
 * method, so app.ts gets the bytes). Strict RFC 9112 §2.2/§5: CRLF only, no
 * obs-fold, token names, one line per field; the caller authenticates
 * before anything else (the Ban-Url expression) is looked at.
 *
 * Every step is one linear scan (indexOf, a single anchored character class,
 * manual trimming): this runs before authentication, so a backtracking regex
 * here (like `[^\r\n]*?[ \t]*$`, quadratic on a long run of spaces) would
 * let anyone burn CPU with one header line.
 */
export function parseRawBanHead (text: string, maxBytes: number): RawHead {
  const bad = (message = 'malformed request\n'): RawHead => ({ ok: false, status: 400, message })
  const end = text.indexOf('\r\n\r\n')
  if (end === -1 || end > maxBytes) return bad()
  const lines = text.slice(0, end).split('\r\n')
  const first = lines[0]
  // request-line = method SP request-target SP HTTP-version (RFC 9112 §3); origin-form only.
  const sp = first.indexOf(' ', 4)
  if (!first.startsWith('BAN /') || sp === -1) return bad()
  const target = first.slice(4, sp)
  const version = first.slice(sp + 1)
  if (version !== 'HTTP/1.1' && version !== 'HTTP/1.0') return bad()
  for (let i = 0; i < target.length; i++) if (target.charCodeAt(i) <= 32 || target.charCodeAt(i) === 127) return bad()
  // No prototype: a field named `constructor` or `__proto__` is just a field.
  const headers: Record<string, string> = Object.create(null)
  for (let l = 1; l < lines.length; l++) {
    const line = lines[l]
    // A bare CR or LF inside a line is a framing attack, not a separator (RFC 9112 §2.2).
    if (line.includes('\n') || line.includes('\r')) return bad()
    const colon = line.indexOf(':')
    if (colon <= 0) return bad()
    const rawName = line.slice(0, colon)
    // Also rejects obs-fold (a line starting with SP/HTAB, RFC 9112 §5.2) and space before the colon (§5.1).
    if (!TOKEN_CHARS.test(rawName)) return bad()
    let a = colon + 1
    let b = line.length
    while (a < b && isOws(line.charCodeAt(a))) a++
    while (b > a && isOws(line.charCodeAt(b - 1))) b--
    const name = rawName.toLowerCase()
    if (name in headers) return bad(`duplicate ${name}\n`)
    headers[name] = line.slice(a, b)
  }
  return { ok: true, target, headers }
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
      // A ban applies to every page fetched until now, whether it is stored
      // already or still in flight (it is stored after the ban, but its
      // content predates it); not to pages fetched later.
      matches = (o) => o.fetchStarted <= now && re.test(o.url)
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
  // Fetch start, not store time: a fetch in flight across the gap may carry a
  // page rendered before a write whose event we missed.
  const matches: Matcher = (o) => o.fetchStarted <= now
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
