/**
 * Limits on a request head, chosen so that what the parser frames is what
 * the steps see, and what the cache forwards fits what the upstream accepts.
 *
 * Field count. node's parser frames a message with all of its fields but
 * hands the application only the first `server.maxHeadersCount` (2,000 by
 * default): a `Transfer-Encoding: gzip, chunked` placed after 2,000 empty
 * fields makes the parser read a chunked body that recv never sees, and the
 * bytes after it become a second, smuggled request (design §2.5). The server
 * keeps one field more than the limit, so a request that reaches recv with
 * `limit + 1` fields had at least that many and is refused (431, RFC 6585 §5)
 * before anything is read or forwarded; the connection is closed because its
 * framing is unknown.
 *
 * Head size. The cache adds fields to what it forwards (X-Forwarded-For,
 * X-Forwarded-Proto, Via, a normalized Accept-Encoding, a Host when an
 * HTTP/1.0 client sent none, a validator when it revalidates). A head the
 * cache accepted must not become one the upstream refuses (issue 10: a head
 * just under the limit came back 431 from the frontend and replaced a stored
 * page). So `CACHE_MAX_HEADER_BYTES` is the upstream's limit, and the
 * cache's own parser accepts that minus the room its fields need.
 */
import type { IncomingMessage } from 'node:http'
import type { CacheConfig } from './config.js'

/**
 * Longest stored validator (ETag) the cache sends upstream when it
 * revalidates; a longer one is not sent (the fetch is unconditional), so the
 * reserve below holds.
 */
export const MAX_VALIDATOR_BYTES = 256

/**
 * Bytes the cache may add to a client's head, by node's measure (target,
 * field names and values) and by a byte-exact one alike:
 * X-Forwarded-For 66 (an IPv6 address), X-Forwarded-Proto 26, Via 21,
 * Accept-Encoding 27, Host 270 (a DNS name and port, when the client sent
 * none), a validator 300, request-line overhead 30: 740, rounded up to 1 KiB.
 * Each field a client sends also grows by ": " and CRLF (4 bytes) where a
 * limit counts whole lines rather than node's names and values.
 */
export function forwardReserve (maxFields: number): number {
  return 1024 + 4 * maxFields
}

/** The head size the cache's own parser accepts (node's `maxHeaderSize`). */
export function clientHeadLimit (config: Pick<CacheConfig, 'CACHE_MAX_HEADER_BYTES' | 'CACHE_MAX_HEADER_FIELDS'>): number {
  return config.CACHE_MAX_HEADER_BYTES - forwardReserve(config.CACHE_MAX_HEADER_FIELDS)
}

/** The server's `maxHeadersCount`: one more than the limit, so an excess is visible. */
export function parserFieldCount (maxFields: number): number {
  return maxFields + 1
}

/** Whether the request carried more fields than allowed (see `parserFieldCount`). O(1). */
export function tooManyFields (req: IncomingMessage, maxFields: number): boolean {
  return req.rawHeaders.length > 2 * maxFields
}
