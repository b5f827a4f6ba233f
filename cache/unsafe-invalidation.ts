/**
 * RFC 9111 §4.4: a successful unsafe request (POST, PUT, DELETE, …)
 * invalidates what it names on the cache that saw it. Applied on that node
 * only: invalidations caused by writes reach every node from the backend's
 * outbox (design §2.3), the one source of truth for them.
 */

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
