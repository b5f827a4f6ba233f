/**
 * Compression is done once per stored object (gzip and br), never per hit;
 * each request is served the best variant its normalized Accept-Encoding
 * allows (RFC 9110 §12.5.3).
 */
import { gzipSync, brotliCompressSync, constants } from 'node:zlib'
import type { Encoding } from './store.js'
import { parseCacheControl } from './response-fields.js'

const COMPRESSIBLE = /^(text\/|application\/(json|javascript|ecmascript|xml|xhtml\+xml|rss\+xml|atom\+xml|ld\+json|manifest\+json)|image\/svg\+xml)/i

/**
 * Worth compressing: a text type, no coding applied yet, and not tiny (a
 * header costs more than it saves) — and allowed: RFC 9110 §7.7, a proxy
 * must not transform content the origin marked `no-transform` (a coding is a
 * transformation).
 */
export function isCompressible (contentType: string | undefined, contentEncoding: string | undefined, length: number, maxLength: number, cacheControl?: string): boolean {
  if (contentEncoding && contentEncoding !== 'identity') return false
  if (cacheControl !== undefined && parseCacheControl(cacheControl).has('no-transform')) return false
  if (length < 256 || length > maxLength) return false
  return contentType !== undefined && COMPRESSIBLE.test(contentType)
}

/** Both codings, computed synchronously once at store time (a 25 KB page takes well under a millisecond at these levels). */
export function compressVariants (body: Buffer): { gzip: Buffer, br: Buffer } {
  const gzip = copyOut(gzipSync(body, { level: 6 }))
  const br = copyOut(brotliCompressSync(body, {
    params: { [constants.BROTLI_PARAM_QUALITY]: 5, [constants.BROTLI_PARAM_SIZE_HINT]: body.length }
  }))
  return { gzip, br }
}

/** A stored buffer owns its memory, so it never pins a larger shared slab (design §2.7). */
export function copyOut (b: Buffer): Buffer {
  const out = Buffer.allocUnsafeSlow(b.length)
  b.copy(out)
  return out
}

const memo = new Map<string, Encoding>()
const MEMO_MAX = 256

/**
 * Reduces an Accept-Encoding field to the coding we serve: br, then gzip,
 * else identity. Clients send few distinct strings, so results are memoized
 * (bounded: a flood of odd values only costs the parse).
 */
export function normalizeAcceptEncoding (header: string | undefined): Encoding {
  if (!header) return 'identity'
  const hit = memo.get(header)
  if (hit !== undefined) return hit
  const result = parseAcceptEncoding(header)
  if (memo.size < MEMO_MAX) memo.set(header, result)
  return result
}

function parseAcceptEncoding (header: string): Encoding {
  let br = -1
  let gzip = -1
  let star = -1
  for (const part of header.split(',')) {
    const [rawName, ...params] = part.split(';')
    const name = rawName.trim().toLowerCase()
    let q = 1
    for (const p of params) {
      const m = /^\s*q\s*=\s*([0-9.]+)\s*$/i.exec(p)
      if (m) q = Number(m[1])
    }
    if (Number.isNaN(q)) q = 0
    if (name === 'br') br = q
    else if (name === 'gzip' || name === 'x-gzip') gzip = q
    else if (name === '*') star = q
  }
  if (br < 0) br = star
  if (gzip < 0) gzip = star
  // q=0 means "not acceptable" (RFC 9110 §12.4.2).
  if (br > 0 && br >= gzip) return 'br'
  if (gzip > 0) return 'gzip'
  if (br > 0) return 'br'
  return 'identity'
}

/**
 * The ETag of a coding the cache made itself. RFC 9110 §8.8.3: a strong
 * validator belongs to one representation, and the gzip and br bodies are
 * other representations than the origin's; so their ETag is the origin's
 * made weak (as nginx does). A client revalidating with it still matches
 * (If-None-Match compares weakly), and If-Range, which needs a strong
 * validator, gets the whole body rather than bytes of another coding.
 */
export function etagForCoding (etag: string, encoding: Encoding): string {
  return encoding === 'identity' || etag.startsWith('W/') ? etag : 'W/' + etag
}
