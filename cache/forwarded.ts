/**
 * The X-Forwarded-For the cache sends upstream (design §2.10).
 *
 * The cache is a proxy, so it appends the address it received the request
 * from (each proxy appends, as RFC 7239 §4 has it for Forwarded and as
 * Varnish does with client.ip): the frontend then finds the visitor by
 * walking the list from the right across the hops it trusts. What comes in is believed only across CACHE_TRUSTED_PROXIES (the
 * load balancer): from anybody else, the socket peer is the visitor and any
 * X-Forwarded-For they sent is dropped. The unverified part a client wrote in
 * front of a trusted hop's entry is dropped too, so a frontend that trusts
 * more addresses than the cache does is never fooled by what the cache could
 * not check.
 *
 * Behind a CDN (common/cdn.ts): when the first address the walk does not
 * trust is one of the CDN's (CDN_TRUSTED_RANGES), the visitor is the one the
 * CDN's own client field names, and it takes the CDN's place in the list: the
 * cache has checked that hop, so the roles behind it need not know the CDN's
 * ranges (they trust the cache). The same field from any other address is
 * ignored (the header is dropped upstream, headers.ts).
 *
 * Not part of the cache key, and it need not be: no page depends on it (only
 * form posts and limits do, and those are never stored), so it cannot change
 * a stored response (design §2.5).
 */
import type { IncomingMessage } from 'node:http'
import proxyAddr from '@fastify/proxy-addr'
import type { Trust } from '../common/trusted-proxies.js'
import { cdnVisitor, type CdnIdentity } from '../common/cdn.js'

/** `client, hop…, peer`: the verified hops, the visitor first. */
export function forwardedFor (req: IncomingMessage, trust: Trust, cdn?: CdnIdentity): string {
  // proxy-addr lists the socket peer first and stops at the first untrusted address.
  const hops = proxyAddr.all(req, trust)
  const last = hops.length - 1
  if (cdn !== undefined && cdn.trusts(hops[last])) {
    const visitor = cdnVisitor(cdn, req.headers, hops.length)
    if (visitor !== undefined) hops[last] = visitor
  }
  let header = ''
  for (let i = hops.length - 1; i >= 0; i--) header += (header ? ', ' : '') + (hops[i] ?? '')
  return header
}
