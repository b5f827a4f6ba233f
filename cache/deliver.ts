/**
 * Writing answers: stored objects (the hit path, kept synchronous and free of
 * per-request header building), upstream responses that were not stored, and
 * synthetic answers.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { RequestView } from './policy.js'
import { pipeline, type Readable } from 'node:stream'
import type { PassedAnswer } from './fetch.js'
import type { CachedObject, Encoding } from './store.js'
import { normalizeAcceptEncoding } from './compress.js'
import { buildHead, refreshHeads, headWith, notModifiedHead, currentAge, forRange, type CacheOutcome, type PreparedHead, cacheStatus } from './headers.js'

/**
 * What delivering a stored object needs of a response: node's
 * ServerResponse, or the hit front's writer of prepared bytes (hit-front.ts).
 */
export interface HeadWriter {
  writeHead (status: number, head: PreparedHead): unknown
  end (body?: Buffer): unknown
}

/** Chooses the stored coding this request gets (RFC 9110 §12.5.3, normalized by compress.ts). */
export function pickEncoding (req: RequestView, o: CachedObject): Encoding {
  if (!o.compressible) return 'identity'
  const enc = normalizeAcceptEncoding(req.headers['accept-encoding'])
  return o.bodies[enc] !== undefined ? enc : 'identity'
}

function etagMatches (list: string, etag: string): boolean {
  if (list.trim() === '*') return true
  // RFC 9110 §13.1.2: If-None-Match uses the weak comparison.
  const bare = etag.replace(/^W\//, '')
  for (const candidate of list.split(',')) {
    if (candidate.trim().replace(/^W\//, '') === bare) return true
  }
  return false
}

/** RFC 9111 §4.3.2: a cache answers a conditional request from a stored response it may use. */
export function notModified (req: RequestView, o: CachedObject): boolean {
  if (o.status !== 200) return false
  const inm = req.headers['if-none-match']
  if (inm !== undefined) return o.etag !== undefined && etagMatches(inm, o.etag)
  const ims = req.headers['if-modified-since']
  if (ims !== undefined && o.lastModified !== undefined) {
    const since = Date.parse(ims)
    return Number.isFinite(since) && o.lastModified <= since
  }
  return false
}

/**
 * Delivers a stored object. For a plain HIT the prepared head is written as
 * is (its Age and Cache-Status values are refreshed at most once a second);
 * other outcomes get a copy with their own status values.
 */
export function deliverObject (req: RequestView, res: HeadWriter, o: CachedObject, now: number, outcome: CacheOutcome, status: string | undefined): void {
  if ((req.headers['if-none-match'] !== undefined || req.headers['if-modified-since'] !== undefined) && notModified(req, o)) {
    res.writeHead(304, notModifiedHead(o, pickEncoding(req, o), now, outcome, status ?? cacheStatus('hit')))
    res.end()
    return
  }
  // RFC 9110 §14.2: a Range on a stored full response is answered from the store.
  if (req.headers.range !== undefined && req.method === 'GET' && o.status === 200) {
    const range = selectRange(req, req.headers.range, o)
    if (range !== null) { deliverRange(res, o, range, now, outcome, status); return }
  }
  const enc = pickEncoding(req, o)
  let head: PreparedHead
  if (status === undefined) {
    const second = Math.floor(now / 1000)
    let prepared = o.heads[enc]
    if (prepared === undefined) {
      prepared = o.heads[enc] = buildHead(o, enc)
      o.heads.second = -1
    }
    if (o.heads.second !== second) refreshHeads(o, now, second)
    head = prepared
  } else {
    head = headWith(o, enc, now, outcome, status)
  }
  res.writeHead(o.status, head)
  if (req.method === 'HEAD') res.end()
  else res.end(o.bodies[enc])
}

/** A byte range to send, or 'unsatisfiable' (416). */
type Range = { start: number, end: number } | 'unsatisfiable'

/** RFC 9110 §13.1.5: If-Range with a strong ETag or the exact Last-Modified date keeps the Range; anything else sends the whole. */
function ifRangeHolds (value: string, o: CachedObject): boolean {
  const v = value.trim()
  if (v.startsWith('"') || v.startsWith('W/')) return o.etag !== undefined && !v.startsWith('W/') && !o.etag.startsWith('W/') && v === o.etag
  return o.headers['last-modified'] !== undefined && v === o.headers['last-modified']
}

/**
 * The one byte range a request asks of `o` (RFC 9110 §14.1.2), or null to
 * send the whole representation: a unit other than bytes, a syntax error, an
 * If-Range that does not hold, or several ranges (a server may ignore Range,
 * §14.2, and one full answer is cheaper than multipart/byteranges).
 */
function selectRange (req: RequestView, range: string, o: CachedObject): Range | null {
  const ifRange = req.headers['if-range']
  if (ifRange !== undefined && (typeof ifRange !== 'string' || !ifRangeHolds(ifRange, o))) return null
  const m = /^bytes[ \t]*=[ \t]*(\d*)-(\d*)[ \t]*$/i.exec(range)
  if (!m || (m[1] === '' && m[2] === '')) return null
  const length = o.bodies.identity.length
  if (m[1] === '') {
    // suffix-range: the last N bytes.
    const n = Number(m[2])
    if (n === 0) return 'unsatisfiable'
    return { start: Math.max(0, length - n), end: length - 1 }
  }
  const start = Number(m[1])
  if (m[2] !== '' && Number(m[2]) < start) return null // invalid range-spec: ignore the field
  if (start >= length) return 'unsatisfiable'
  const last = m[2] === '' ? length - 1 : Number(m[2])
  return { start, end: Math.min(last, length - 1) }
}

/** 206 with the selected bytes of the identity body (ranges address one coding's bytes; ours is identity), or 416. */
function deliverRange (res: HeadWriter, o: CachedObject, range: Range, now: number, outcome: CacheOutcome, status: string | undefined): void {
  const length = o.bodies.identity.length
  const st = status ?? cacheStatus('hit; ttl=' + Math.round((o.freshUntil - now) / 1000))
  if (range === 'unsatisfiable') {
    res.writeHead(416, ['content-range', `bytes */${length}`, 'content-length', '0', 'age', String(currentAge(o, now)), 'x-cache', outcome, 'cache-status', st])
    res.end()
    return
  }
  const head = forRange(headWith(o, 'identity', now, outcome, st), range.end - range.start + 1, `bytes ${range.start}-${range.end}/${length}`)
  res.writeHead(206, head)
  res.end(o.bodies.identity.subarray(range.start, range.end + 1))
}

/** Upstream fields we never pass on to clients: our internal tags and the field targeted at us. */
const INTERNAL = new Set(['surrogate-key', 'surrogate-control', 'x-cache', 'cache-status', 'age'])

export interface UpstreamAnswer {
  status: number
  headers: Record<string, string>
  setCookie: string[] | undefined
  age?: string
}

/** Head for a response that goes through without being stored. */
export function passHead (a: UpstreamAnswer, outcome: CacheOutcome, status: string, contentLength: number | undefined): string[] {
  const head: string[] = []
  for (const name in a.headers) {
    if (INTERNAL.has(name) || name === 'content-length' || name === 'set-cookie') continue
    head.push(name, a.headers[name])
  }
  if (a.setCookie) for (const c of a.setCookie) head.push('set-cookie', c)
  if (contentLength !== undefined) head.push('content-length', String(contentLength))
  // RFC 9111 §5.1: Age is passed on when the upstream sent one; otherwise 0 (just fetched).
  head.push('age', a.headers.age ?? '0', 'x-cache', outcome, 'cache-status', status)
  return head
}

/**
 * Writes an upstream answer whose body is (partly) buffered and may continue
 * as a stream, read from the upstream only as fast as this client takes it
 * (pipeline's backpressure: per connection, at most the stream buffers on
 * each side). `sendTimeoutMs` bounds how long a client may stall the stream
 * (see `watchStall`); the buffered part is released once the answer is done.
 */
export function deliverUpstream (req: IncomingMessage, res: ServerResponse, passed: PassedAnswer, outcome: CacheOutcome, status: string, sendTimeoutMs = 0): void {
  const { answer: a, chunks, rest } = passed
  res.once('close', passed.release)
  const noBody = req.method === 'HEAD' || a.status === 204 || a.status === 304
  let length: number | undefined
  if (!rest) length = chunks.reduce((n, c) => n + c.length, 0)
  else if (a.headers['content-length'] !== undefined) length = Number(a.headers['content-length'])
  if (noBody && req.method === 'HEAD' && a.headers['content-length'] !== undefined) length = Number(a.headers['content-length'])
  res.writeHead(a.status, passHead(a, outcome, status, a.status === 204 || a.status === 304 ? undefined : length))
  if (noBody) {
    rest?.destroy()
    res.end()
    return
  }
  for (const c of chunks) res.write(c)
  if (!rest) { res.end(); return }
  let unwatch: (() => void) | undefined
  // Streams large bodies with backpressure; a client that goes away releases the upstream.
  pipeline(rest, res, () => { unwatch?.() /* errors end both sides; nothing left to answer */ })
  if (sendTimeoutMs > 0) unwatch = watchStall(rest, res, sendTimeoutMs)
}

/**
 * A streamed answer holds one of its upstream's connections for as long as
 * the client takes to read it (undici stops its body timeout while the
 * stream is paused by backpressure), so a client that stops reading would
 * hold it until the socket's idle timeout. Here a client that accepts no
 * bytes for `ms` while the cache has bytes for it is dropped, and with it
 * the upstream request: its connection is closed and the slot freed (the
 * Varnish `idle_send_timeout` idea). A slow upstream does not count: the
 * clock only runs while the client's side is full.
 */
function watchStall (rest: Readable, res: ServerResponse, ms: number): () => void {
  let timer: NodeJS.Timeout | undefined
  const stalled = (): void => {
    timer = undefined
    res.destroy()
    rest.destroy()
  }
  const arm = (): void => { if (timer === undefined && res.writableNeedDrain) timer = setTimeout(stalled, ms) }
  const disarm = (): void => { if (timer !== undefined) { clearTimeout(timer); timer = undefined } }
  // Registered after pipeline's own listener: by then the chunk has been written and writableNeedDrain is current.
  rest.on('data', arm)
  res.on('drain', disarm)
  arm()
  return () => {
    disarm()
    rest.off('data', arm)
    res.off('drain', disarm)
  }
}

export function deliverSynth (res: ServerResponse, status: number, body: string, extra?: Record<string, string>, contentType = 'text/plain; charset=utf-8'): void {
  if (res.headersSent) { res.destroy(); return }
  const head: string[] = ['content-type', contentType, 'cache-control', 'no-store', 'content-length', String(Buffer.byteLength(body))]
  if (extra) for (const k in extra) head.push(k, extra[k])
  res.writeHead(status, head)
  res.end(res.req?.method === 'HEAD' ? undefined : body)
}
