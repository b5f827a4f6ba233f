// Where an HTTP/1.1 response ends, and the little the accounting needs from
// it (status, bytes, cache outcome, whether the server closes), read from
// the bytes as they arrive: no header object, no string per header, no
// copy of the body. RFC 9112 §6.3 decides the body length: no body for
// 1xx, 204 and 304; chunked when Transfer-Encoding ends in `chunked`;
// Content-Length bytes; otherwise until the server closes.
//
// One reader per connection, one response at a time (no pipelining), so a
// read never holds more than the end of one response. Reads land in a
// buffer shared by every connection of the thread (http-client.ts): only a
// head split over two reads is copied, to be joined with the next read.
import { bytesAre, CacheHeadScan, type CacheInfo } from './cache-headers.js'

export class HttpFramingError extends Error {}

const CR = 0x0d
const LF = 0x0a
const SP = 0x20
const HTAB = 0x09
const COLON = 0x3a
const CRLFCRLF = Buffer.from('\r\n\r\n', 'latin1')
/** A head larger than this is not a response this tool can count. */
export const MAX_HEAD = 64 * 1024

const HEAD = 0
const SIZED = 1
const CHUNK_SIZE = 2
const CHUNK_EXT = 3
const CHUNK_DATA = 4
const CHUNK_DATA_END = 5
const TRAILERS = 6
const UNTIL_CLOSE = 7

function isDigit (c: number): boolean {
  return c >= 0x30 && c <= 0x39
}

function hexValue (c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30
  c |= 0x20
  if (c >= 0x61 && c <= 0x66) return c - 0x61 + 10
  return -1
}

export class ResponseReader {
  /** status of the response being read (its final status: interim 1xx responses are skipped) */
  status = 0
  /** bytes of this response on the wire so far, head and body */
  bytes = 0
  /** the server closes the connection after this response (Connection: close, HTTP/1.0) */
  closeAfter = false
  readonly #cache = new CacheHeadScan()
  #state = HEAD
  /** the start of a head split over reads (a copy) */
  #partial: Buffer | null = null
  /** body bytes left (SIZED) or bytes left in the current chunk (CHUNK_DATA) */
  #left = 0
  /** CHUNK_SIZE: digits seen; CHUNK_DATA_END, TRAILERS: bytes of the current line */
  #n = 0

  /** Before the next request on this connection. */
  reset (): void {
    this.status = 0
    this.bytes = 0
    this.closeAfter = false
    this.#state = HEAD
    this.#partial = null
    this.#cache.reset()
  }

  get cache (): CacheInfo { return this.#cache.result() }

  /**
   * Reads b[start, end). Returns the offset in b just past the end of the
   * response once it is complete, -1 while more is needed. Throws
   * HttpFramingError on bytes that are not an HTTP/1.x response.
   */
  execute (b: Buffer, start: number, end: number): number {
    let i = start
    while (i < end) {
      switch (this.#state) {
        case HEAD: {
          const at = this.#head(b, i, end)
          if (at < 0) return -1
          i = at
          if (this.#state === HEAD) continue // an interim 1xx response: the real one follows
          if (this.#state === SIZED && this.#left === 0) return i
          break
        }
        case SIZED: {
          const n = Math.min(this.#left, end - i)
          this.#left -= n
          this.bytes += n
          i += n
          if (this.#left === 0) return i
          break
        }
        case UNTIL_CLOSE:
          this.bytes += end - i
          return -1
        default: {
          const at = this.#chunked(b, i, end)
          if (at >= 0) return at
          return -1
        }
      }
    }
    // a head with no body ends exactly here
    return this.#state === SIZED && this.#left === 0 && this.status !== 0 ? i : -1
  }

  /** The server closed the connection: true when that ends the response (a body read until close). */
  finishAtClose (): boolean {
    return this.#state === UNTIL_CLOSE
  }

  /** Finds the end of the head from b[i]; returns the offset after it, or -1 (the start is kept for the next read). */
  #head (b: Buffer, i: number, end: number): number {
    let buf = b
    let from = i
    let limit = end
    let searchFrom = i
    if (this.#partial !== null) {
      const kept = this.#partial.length
      buf = Buffer.concat([this.#partial, b.subarray(i, end)])
      from = 0
      limit = buf.length
      searchFrom = Math.max(0, kept - 3)
    }
    // the shared read buffer holds older bytes past `end`: a match there does not count
    let e = buf.indexOf(CRLFCRLF, searchFrom)
    if (e < 0 || e + 4 > limit) {
      if (limit - from > MAX_HEAD) throw new HttpFramingError(`response head over ${MAX_HEAD} bytes`)
      this.bytes += end - i
      this.#partial = Buffer.from(buf.subarray(from, limit))
      return -1
    }
    const kept = this.#partial === null ? 0 : this.#partial.length
    this.#partial = null
    this.bytes += e + 4 - from - kept
    this.#parseHead(buf, from, e)
    e += 4
    // back to offsets in b
    return buf === b ? e : i + (e - kept)
  }

  /** The head b[s, e) (its final CRLF CRLF not included). */
  #parseHead (b: Buffer, s: number, e: number): void {
    // HTTP/1.x SSS
    if (e - s < 12 || b[s] !== 0x48 || b[s + 1] !== 0x54 || b[s + 2] !== 0x54 || b[s + 3] !== 0x50 || b[s + 4] !== 0x2f ||
      b[s + 5] !== 0x31 || b[s + 6] !== 0x2e || b[s + 8] !== SP || !isDigit(b[s + 9]) || !isDigit(b[s + 10]) || !isDigit(b[s + 11])) {
      throw new HttpFramingError(`not an HTTP/1.x status line: ${JSON.stringify(b.toString('latin1', s, Math.min(e, s + 40)))}`)
    }
    const status = (b[s + 9] - 0x30) * 100 + (b[s + 10] - 0x30) * 10 + (b[s + 11] - 0x30)
    const http10 = b[s + 7] === 0x30
    let contentLength = -1
    let chunked = false
    let otherCoding = false
    let close = false
    let keepAlive = false
    this.#cache.reset()
    let line = b.indexOf(LF, s)
    while (line >= 0 && line < e) {
      const ls = line + 1
      let le = b.indexOf(LF, ls)
      if (le < 0 || le > e) le = e
      line = le
      if (le > ls && b[le - 1] === CR) le--
      const first = b[ls] | 0x20
      // only these names matter: content-length, connection, cache-status, transfer-encoding, x-cache
      if (first !== 0x63 && first !== 0x74 && first !== 0x78) continue
      const colon = b.indexOf(COLON, ls)
      if (colon < 0 || colon >= le) continue
      let vs = colon + 1
      let ve = le
      while (vs < ve && (b[vs] === SP || b[vs] === HTAB)) vs++
      while (ve > vs && (b[ve - 1] === SP || b[ve - 1] === HTAB)) ve--
      switch (colon - ls) {
        case 7:
          if (bytesAre(b, ls, colon, 'x-cache')) this.#cache.xCache(b, vs, ve)
          break
        case 10:
          if (bytesAre(b, ls, colon, 'connection')) {
            if (hasToken(b, vs, ve, 'close')) close = true
            if (hasToken(b, vs, ve, 'keep-alive')) keepAlive = true
          }
          break
        case 12:
          if (bytesAre(b, ls, colon, 'cache-status')) this.#cache.cacheStatus(b, vs, ve)
          break
        case 14:
          if (bytesAre(b, ls, colon, 'content-length')) {
            if (vs === ve || ve - vs > 15) throw new HttpFramingError('bad Content-Length')
            let n = 0
            for (let k = vs; k < ve; k++) {
              if (!isDigit(b[k])) throw new HttpFramingError(`bad Content-Length ${JSON.stringify(b.toString('latin1', vs, ve))}`)
              n = n * 10 + (b[k] - 0x30)
            }
            // RFC 9112 §6.3: differing lengths make the framing unknowable
            if (contentLength >= 0 && contentLength !== n) throw new HttpFramingError('differing Content-Length values')
            contentLength = n
          }
          break
        case 17:
          if (bytesAre(b, ls, colon, 'transfer-encoding')) {
            // the last coding decides (RFC 9112 §6.3); a later line adds codings to the list
            chunked = ve - vs >= 7 && bytesAre(b, ve - 7, ve, 'chunked') && (ve - vs === 7 || b[ve - 8] === SP || b[ve - 8] === HTAB || b[ve - 8] === 0x2c)
            otherCoding = !chunked
          }
          break
      }
    }
    this.status = status
    this.closeAfter = close || (http10 && !keepAlive)
    if (status >= 100 && status < 200) {
      // interim (100 Continue, 103 Early Hints): its bytes count, the final response follows
      this.#state = HEAD
      this.#cache.reset()
      return
    }
    if (status === 204 || status === 304) {
      this.#state = SIZED
      this.#left = 0
    } else if (chunked) {
      this.#state = CHUNK_SIZE
      this.#left = 0
      this.#n = 0
    } else if (otherCoding) {
      this.#state = UNTIL_CLOSE
      this.closeAfter = true
    } else if (contentLength >= 0) {
      this.#state = SIZED
      this.#left = contentLength
    } else {
      this.#state = UNTIL_CLOSE
      this.closeAfter = true
    }
  }

  /** Chunked body from b[i]: returns the offset after the last CRLF once complete, else -1. */
  #chunked (b: Buffer, i: number, end: number): number {
    const start = i
    while (i < end) {
      const c = b[i]
      switch (this.#state) {
        case CHUNK_SIZE: {
          const h = hexValue(c)
          if (h >= 0) {
            if (++this.#n > 12) throw new HttpFramingError('chunk size too large')
            this.#left = this.#left * 16 + h
            i++
            continue
          }
          if (this.#n === 0) throw new HttpFramingError('bad chunk size')
          // chunk extensions (and whitespace before them) are skipped up to the line end
          this.#state = CHUNK_EXT
          continue
        }
        case CHUNK_EXT:
          i++
          if (c !== LF) continue
          if (this.#left === 0) {
            this.#state = TRAILERS
            this.#n = 0
          } else this.#state = CHUNK_DATA
          continue
        case CHUNK_DATA: {
          const n = Math.min(this.#left, end - i)
          this.#left -= n
          i += n
          if (this.#left === 0) {
            this.#state = CHUNK_DATA_END
            this.#n = 0
          }
          continue
        }
        case CHUNK_DATA_END:
          // the CRLF after the chunk's data
          i++
          if (c === LF) {
            this.#state = CHUNK_SIZE
            this.#left = 0
            this.#n = 0
          } else if (c !== CR || this.#n++ > 0) throw new HttpFramingError('chunk data longer than its size')
          continue
        case TRAILERS:
          // trailer lines until an empty one
          i++
          if (c === LF) {
            if (this.#n === 0) {
              this.bytes += i - start
              this.#state = SIZED
              this.#left = 0
              return i
            }
            this.#n = 0
          } else if (c !== CR) this.#n++
          continue
      }
    }
    this.bytes += i - start
    return -1
  }
}

/** The comma-separated list b[s, e) holds `token` (ASCII case-insensitive). */
function hasToken (b: Uint8Array, s: number, e: number, token: string): boolean {
  let p = s
  for (let i = s; i <= e; i++) {
    if (i < e && b[i] !== 0x2c) continue
    let ts = p
    let te = i
    while (ts < te && (b[ts] === SP || b[ts] === HTAB)) ts++
    while (te > ts && (b[te - 1] === SP || b[te - 1] === HTAB)) te--
    if (bytesAre(b, ts, te, token)) return true
    p = i + 1
  }
  return false
}
