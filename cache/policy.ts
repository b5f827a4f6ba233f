/**
 * The default policy, in the spirit of Varnish's builtin.vcl: every decision
 * the state machine asks about, in one screen. Change behaviour here, not in
 * the steps.
 *
 * What the defaults promise (README, "The cache's default policy"):
 * - Stale is served only with permission (RFC 9111 §4.2.4): the origin's
 *   stale-while-revalidate / stale-if-error (RFC 5861), the client's
 *   max-stale, or a disconnected origin (no upstream answered at all). Grace
 *   the origin did not grant (CACHE_GRACE_SECONDS) is opt-in, 0 by default.
 * - Reload storms: request no-cache / max-age=0 / Pragma: no-cache are
 *   honoured (RFC 9111 §5.2.1), not ignored as Varnish does, but they
 *   coalesce: one revalidation of a key at a time, and a request that arrives
 *   while one is under way waits for the next (state-machine.ts `lookup`), so
 *   every answer was validated after its request arrived and a storm of N
 *   reloads costs about two fetches, not N.
 * - Errors about the request (4xx other than 404/405/410/414) are passed to
 *   their requester only: never stored, never a hit-for-miss marker, never
 *   evicting the stored page (`requestCaused`).
 */
import type { IncomingMessage } from 'node:http'

/** What the policy reads of a request: node's IncomingMessage, or the hit front's parse of one (hit-front.ts). */
export type RequestView = Pick<IncomingMessage, 'method' | 'url' | 'headers'>
import type { Freshness } from './freshness.js'

const KEEP_MS = 120_000

export type RecvAction = 'lookup' | 'pass' | 'purge' | 'internal' | 'reject'

export const policy = {
  /** vcl_recv: what to do with a request that passed the framing checks. */
  recv (req: RequestView): RecvAction {
    const m = req.method
    if (m === 'GET' || m === 'HEAD') {
      // Our own endpoints (health, metrics) are answered here, never cached or forwarded.
      if (req.url?.startsWith('/-/') === true) return 'internal'
      // RFC 9111 §3.5 (Authorization) and design §2.5 (Cookie): looked up, but
      // only objects the origin explicitly shared may answer them (see `hitAllowed`).
      return 'lookup'
    }
    // Invalidation requests (authenticated in the purge step).
    if (m === 'PURGE' || m === 'BAN') return 'purge'
    // RFC 9111 §2: only GET/HEAD responses are stored; everything else goes straight through.
    return 'pass'
  },

  /** Requests with credentials: personal unless the origin said otherwise, so never coalesced. */
  credentialed (req: RequestView): boolean {
    return req.headers.authorization !== undefined || req.headers.cookie !== undefined
  },

  /** A stored object may answer a credentialed request only if it was explicitly shared (RFC 9111 §3.5). */
  hitAllowed (credentialed: boolean, explicitlyShared: boolean): boolean {
    return !credentialed || explicitlyShared
  },

  /** vcl_backend_response: store, or remember the key as hit-for-miss. */
  backendResponse (status: number, fresh: Freshness, bodyLength: number | undefined, maxObjectBytes: number): 'store' | 'hit-for-miss' | 'too-big' | 'client-error' {
    // An error about the request (a 400 for a header, a 431 for a long head)
    // is never stored, even when the origin labels it cacheable: it would be
    // served to everyone who asks for the page (cache-poisoned denial of
    // service). 404/405/410/414 speak of the target URI alone (RFC 9110
    // §15.1 lists them as heuristically cacheable) and are stored as usual.
    if (policy.requestCaused(status)) return 'client-error'
    if (!fresh.storable) return 'hit-for-miss'
    // Objects above the limit stream through and are never stored (issue 5, Storage).
    if (bodyLength !== undefined && bodyLength > maxObjectBytes) return 'too-big'
    return 'store'
  },

  /** 4xx answers about the request rather than the resource: they never replace, evict or mark a stored page. */
  requestCaused (status: number): boolean {
    return status >= 400 && status < 500 && status !== 404 && status !== 405 && status !== 410 && status !== 414
  },

  /** Unsafe methods invalidate what they touched (RFC 9111 §4.4). */
  invalidatesOnSuccess (method: string): boolean {
    return method !== 'GET' && method !== 'HEAD' && method !== 'OPTIONS' && method !== 'TRACE'
  },

  /**
   * How long a stored object is kept past its freshness (Varnish's keep):
   * its longest stale window, plus two minutes in which it can still be
   * revalidated cheaply with its validators, given to a client that sends
   * max-stale (RFC 9111 §5.2.1.2), or served while no upstream answers at all
   * (§4.2.4 "disconnected"). Nothing is served from it otherwise; the byte
   * bound makes it cost no more than LRU space.
   */
  keepMs (o: { swrMs: number, sieMs: number, graceMs: number }): number {
    return Math.max(o.swrMs, o.sieMs, o.graceMs) + KEEP_MS
  }
} as const
