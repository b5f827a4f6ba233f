/**
 * What the frontend tells caches about each answer (RFC 9111), in one table.
 *
 * Pages: `public, max-age=0, s-maxage=…, stale-while-revalidate=…, stale-if-error=…`
 * - `max-age=0` (RFC 9111 §5.2.2.1): browsers revalidate every time, cheaply
 *   (ETag → 304), so a visitor never keeps an old page after a purge.
 * - `s-maxage` (§5.2.2.10): shared caches keep pages for minutes. Purges are
 *   exact (surrogate keys after every write, bans after a bus gap), so the
 *   lifetime only bounds the damage of a purge that never arrived; long
 *   lifetimes are what let one frontend carry a flash crowd.
 * - `stale-while-revalidate` (RFC 5861 §3): one background refresh instead of
 *   a stampede when a hot page expires.
 * - `stale-if-error` (RFC 5861 §4): when every frontend (or the database) is
 *   down, the cache keeps serving what it has for a day (design §2.6).
 * Non-2xx answers that depend on content (404 of an unknown slug) get short
 * lifetimes and the key of the list that a later publish would purge.
 *
 * The CDN in front gets its own lifetime, `CDN-Cache-Control` (RFC 9213 §3):
 * our caches are purged after every write, a CDN only when the purger reaches
 * it. Without a purger it gets a few seconds (FRONTEND_CDN_MAX_AGE: micro-
 * caching that absorbs a crowd and hides a write no longer than that); with
 * one, as long as our caches. Never stale-while-revalidate there: a page the
 * CDN serves stale while it refreshes would outlive its lifetime.
 */
import { createHash } from 'node:crypto'

export interface CachePolicy {
  /** Shared-cache lifetime, seconds. */
  sMaxAge: number
  /** Browser lifetime, seconds (0 for pages). */
  maxAge: number
  staleWhileRevalidate: number
  staleIfError: number
  /** The content never changes once served (no write purges it): a CDN may keep it as long as we do. */
  immutable?: true
}

export const POLICIES = {
  /** Articles, tutorials, lists, home: purged exactly on change. */
  page: { maxAge: 0, sMaxAge: 300, staleWhileRevalidate: 60, staleIfError: 86_400 },
  /** The sitemap: read by crawlers and `warm`, large, changes only on publish. */
  sitemap: { maxAge: 0, sMaxAge: 3600, staleWhileRevalidate: 600, staleIfError: 86_400 },
  /** A certificate never changes once issued. */
  certificate: { maxAge: 0, sMaxAge: 86_400, staleWhileRevalidate: 3600, staleIfError: 604_800, immutable: true },
  /**
   * The participants counter, polled by every open home page: a few seconds
   * in the browser and the cache absorb the polling; it is also purged on
   * every sign-up and completion (key `counter`).
   */
  counter: { maxAge: 5, sMaxAge: 5, staleWhileRevalidate: 10, staleIfError: 3600 },
  /** 404 of a content URL: short, in case the content is published soon (it is also purged by key). */
  notFound: { maxAge: 0, sMaxAge: 30, staleWhileRevalidate: 0, staleIfError: 0 }
} as const satisfies Record<string, CachePolicy>

export type PolicyName = keyof typeof POLICIES

export function cacheControl (policy: CachePolicy): string {
  const parts = ['public', `max-age=${policy.maxAge}`, `s-maxage=${policy.sMaxAge}`]
  if (policy.staleWhileRevalidate > 0) parts.push(`stale-while-revalidate=${policy.staleWhileRevalidate}`)
  if (policy.staleIfError > 0) parts.push(`stale-if-error=${policy.staleIfError}`)
  return parts.join(', ')
}

/**
 * The CDN's lifetime of a shareable answer (RFC 9213 §3): at most
 * `cdnMaxAge` seconds for anything a write can change, since the CDN is
 * purged only when a purger reaches it; stale-if-error as for us (RFC 5861
 * §4), so an outage of the whole tier still shows pages.
 */
export function cdnCacheControl (policy: CachePolicy, cdnMaxAge: number): string {
  const maxAge = policy.immutable ? policy.sMaxAge : Math.min(policy.sMaxAge, cdnMaxAge)
  return policy.staleIfError > 0 ? `max-age=${maxAge}, stale-if-error=${policy.staleIfError}` : `max-age=${maxAge}`
}

/** The author's own view after a write, error pages, form answers: never stored (RFC 9111 §5.2.2.3, §5.2.2.7). */
export const NO_STORE = 'private, no-store'
/**
 * A page rendered while the read pool had not yet replayed a write it shows:
 * no shared cache may keep it (design §2.4), and browsers must not either.
 */
export const NOT_YET_SHAREABLE = 'no-store'

/** Fingerprinted assets never change under one name. */
export const IMMUTABLE = 'public, max-age=31536000, immutable'

/** A strong entity tag of the exact bytes (RFC 9110 §8.8.3). */
export function strongEtag (body: Buffer | string): string {
  return `"${createHash('sha256').update(body).digest('base64url').slice(0, 27)}"`
}

/**
 * `If-None-Match` evaluation (RFC 9110 §13.1.2): weak comparison, `*`
 * matches any current representation.
 */
export function ifNoneMatchHits (header: string | string[] | undefined, etag: string): boolean {
  if (header === undefined) return false
  const value = Array.isArray(header) ? header.join(',') : header
  if (value.trim() === '*') return true
  const opaque = etag.replace(/^W\//, '')
  for (const candidate of value.split(',')) {
    if (candidate.trim().replace(/^W\//, '') === opaque) return true
  }
  return false
}
