/**
 * Who the visitor is (design §2.10). Every role that receives a request from
 * another one — the cache from the load balancer, the frontend from the
 * cache, the backend from the frontend — takes the visitor's address from
 * `X-Forwarded-For`, but only across hops it was configured to trust: walking
 * the list from the right (the nearest hop first), the client is the first
 * address that is not a trusted proxy. Whatever an untrusted sender wrote to
 * the left of that is never believed.
 *
 * One library decides this for every role: @fastify/proxy-addr, the same code
 * behind Fastify's `trustProxy`, so the cache (raw node:http) and the Fastify
 * roles cannot disagree about the same chain.
 */
import { Type } from '@sinclair/typebox'
import proxyAddr from '@fastify/proxy-addr'
import { list } from './config.js'

/** `trust(address, hopIndex)`: may this hop speak for the one before it? */
export type Trust = (address: string, hop: number) => boolean

/** The schema of a `<ROLE>_TRUSTED_PROXIES` variable: addresses or CIDRs, comma-separated, or `none`. */
export const TrustedProxies = (description: string, def: string) =>
  Type.String({ default: def, pattern: '^\\s*(none|[0-9a-fA-F.:/]+(\\s*,\\s*[0-9a-fA-F.:/]+)*)\\s*$', description })

/** The configured list as proxy-addr takes it: empty for `none` (nobody is trusted). */
export function trustedProxyList (value: string): string[] {
  const entries = list(value)
  return entries.length === 1 && entries[0] === 'none' ? [] : entries
}

/** A compiled trust function; throws a TypeError naming a malformed address or CIDR. */
export function compileTrust (value: string): Trust {
  const entries = trustedProxyList(value)
  return entries.length === 0 ? () => false : proxyAddr.compile(entries)
}

