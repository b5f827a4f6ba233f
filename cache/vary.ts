/**
 * Cache keys. The primary key is host + request target (RFC 9111 §2: the
 * target URI); the secondary key adds the request header values nominated by
 * the stored response's `Vary` (RFC 9111 §4.1), normalized so that trivially
 * different spellings of the same preference share one stored variant.
 */
import { normalizeAcceptEncoding } from './compress.js'
import { forwardedValue } from './headers.js'

/** Host names cannot contain '/', and a request target starts with it, so plain concatenation is unambiguous. */
export function primaryKey (host: string, url: string): string {
  return host + url
}

/** RFC 9111 §4.1: a Vary of `*` never matches a later request; such responses are not stored. */
export function varyHasStar (vary: string | undefined): boolean {
  return vary !== undefined && /(^|,)\s*\*\s*(,|$)/.test(vary)
}

/**
 * RFC 9111 §4.1 lets a cache normalize header values before comparing them
 * ("e.g., combining multiple header fields with the same name, normalizing
 * whitespace, or case"). Accept-Encoding is reduced to the coding we would
 * serve, which keeps the number of variants at three at most.
 */
export function normalizeVaryValue (name: string, value: string | string[] | undefined): string {
  // No Accept-Encoding and `identity` are forwarded alike (headers.ts sends
  // the normalized value), so they share one variant.
  if (name === 'accept-encoding') return normalizeAcceptEncoding(Array.isArray(value) ? value.join(',') : value)
  if (value === undefined) return ''
  const joined = Array.isArray(value) ? value.join(',') : value
  return joined.split(',').map((s) => s.trim().replace(/\s+/g, ' ')).filter(Boolean).join(',')
}

/**
 * The full key of the variant that `headers` select among the URL's
 * variants. Each Vary field counts with the value the origin receives
 * (headers.ts `forwardedValue`): a field the client named in Connection, or
 * one the cache does not forward, counts as absent — as it was for the
 * origin when it rendered the response.
 */
export function variantKey (primary: string, varyNames: readonly string[] | null | undefined, headers: Record<string, string | string[] | undefined>): string {
  if (!varyNames || varyNames.length === 0) return primary
  let key = primary
  for (const name of varyNames) key += '\n' + name + ':' + normalizeVaryValue(name, forwardedValue(headers, name))
  return key
}
