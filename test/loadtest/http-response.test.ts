// Framing a response from its bytes (RFC 9112 §6.3), whatever the reads
// cut it into, and reading the cache outcome from the head's bytes the same
// way the header-object parser does.
import t, { type Test } from 'tap'
import { CacheHeadScan, parseCacheValues } from '../../loadtest/cache-headers.js'
import { HttpFramingError, ResponseReader } from '../../loadtest/http-response.js'

interface Read { end: number, at: number, status: number, bytes: number, closeAfter: boolean, cache: unknown }

/** Feeds `raw` in reads of `size` bytes, each placed in a reused buffer full of stale bytes past it (as the shared read buffer is). */
function readIn (raw: Buffer, size: number): Read {
  const r = new ResponseReader()
  r.reset()
  const shared = Buffer.alloc(raw.length + 64, '\r\n\r\nHTTP/1.1 200 OK\r\n\r\n')
  let off = 0
  while (off < raw.length) {
    const n = Math.min(size, raw.length - off)
    raw.copy(shared, 0, off, off + n)
    const end = r.execute(shared, 0, n)
    if (end >= 0) return { end, at: off + end, status: r.status, bytes: r.bytes, closeAfter: r.closeAfter, cache: r.cache }
    off += n
  }
  return { end: -1, at: -1, status: r.status, bytes: r.bytes, closeAfter: r.closeAfter, cache: r.cache }
}

/** The same answer for every way of cutting the response into reads. */
function everyCut (t: Test, raw: Buffer, expect: Partial<Read>): void {
  for (const size of [raw.length, 1, 2, 3, 5, 7, 16, 64]) {
    const got = readIn(raw, size)
    t.match(got, { ...expect, at: raw.length, bytes: raw.length }, `reads of ${size} byte(s)`)
  }
}

const crlf = (lines: string[]): Buffer => Buffer.from(lines.join('\r\n'), 'latin1')

t.test('Content-Length: the response ends after that many body bytes', async t => {
  everyCut(t, crlf(['HTTP/1.1 200 OK', 'Server: nginx', 'Content-Type: text/html', 'Content-Length: 11', '', 'hello world']), { status: 200, closeAfter: false, cache: { state: null, collapsed: false } })
  everyCut(t, crlf(['HTTP/1.1 404 Not Found', 'content-length: 0', '', '']), { status: 404 })
  everyCut(t, crlf(['HTTP/1.1 200 OK', 'Content-Length: 3', 'Content-Length: 3', '', 'abc']), { status: 200 })
})

t.test('chunked: sizes in hex, extensions, trailers', async t => {
  const body = ['HTTP/1.1 200 OK', 'Transfer-Encoding: chunked', 'Content-Length: 999', '', '5', 'hello', '1a;name=value', 'abcdefghijklmnopqrstuvwxyz', 'A ', '0123456789', '0', 'X-Trailer: 1', '', '']
  everyCut(t, crlf(body), { status: 200 })
  everyCut(t, crlf(['HTTP/1.1 200 OK', 'transfer-encoding: gzip, chunked', '', '3', 'abc', '0', '', '']), { status: 200 })
  const r = readIn(Buffer.concat([crlf(['HTTP/1.1 200 OK', 'Transfer-Encoding: chunked', '', '2', 'ab', '0', '', '']), Buffer.from('HTTP/1.1 200 OK\r\n')]), 1000)
  t.equal(r.end, crlf(['HTTP/1.1 200 OK', 'Transfer-Encoding: chunked', '', '2', 'ab', '0', '', '']).length, 'ends where the response does, not at the end of the read')
})

t.test('no body: 204, 304; interim 1xx responses are skipped', async t => {
  everyCut(t, crlf(['HTTP/1.1 204 No Content', 'Content-Length: 10', '', '']), { status: 204 })
  everyCut(t, crlf(['HTTP/1.1 304 Not Modified', '', '']), { status: 304 })
  everyCut(t, crlf(['HTTP/1.1 100 Continue', '', 'HTTP/1.1 103 Early Hints', 'Link: </a.css>', '', 'HTTP/1.1 201 Created', 'Content-Length: 2', '', 'ok']), { status: 201 })
})

t.test('the server closing: Connection: close, HTTP/1.0, a body read until close', async t => {
  everyCut(t, crlf(['HTTP/1.1 200 OK', 'Connection: keep-alive, Close', 'Content-Length: 2', '', 'ok']), { status: 200, closeAfter: true })
  everyCut(t, crlf(['HTTP/1.0 200 OK', 'Content-Length: 2', '', 'ok']), { status: 200, closeAfter: true })
  everyCut(t, crlf(['HTTP/1.0 200 OK', 'Connection: keep-alive', 'Content-Length: 2', '', 'ok']), { status: 200, closeAfter: false })
  const r = new ResponseReader()
  r.reset()
  const raw = crlf(['HTTP/1.1 200 OK', 'Content-Type: text/plain', '', 'until the end'])
  t.equal(r.execute(raw, 0, raw.length), -1, 'no length: more may come')
  t.equal(r.finishAtClose(), true, 'the close ends it')
  t.equal(r.bytes, raw.length)
  t.equal(r.closeAfter, true)
  const te = new ResponseReader()
  te.reset()
  const gz = crlf(['HTTP/1.1 200 OK', 'Transfer-Encoding: gzip', 'Content-Length: 2', '', 'xx'])
  t.equal(te.execute(gz, 0, gz.length), -1, 'a coding other than chunked last: read until close')
  t.equal(te.finishAtClose(), true)
  const sized = new ResponseReader()
  sized.reset()
  const cut = crlf(['HTTP/1.1 200 OK', 'Content-Length: 10', '', 'short'])
  t.equal(sized.execute(cut, 0, cut.length), -1)
  t.equal(sized.finishAtClose(), false, 'a close before Content-Length bytes cuts the response short')
})

t.test('bytes that are not a response are refused, with the reason', async t => {
  const bad = (lines: string[], re: RegExp): void => {
    const r = new ResponseReader()
    r.reset()
    const raw = crlf(lines)
    t.throws(() => r.execute(raw, 0, raw.length), { constructor: HttpFramingError, message: re }, re.source)
  }
  bad(['SSH-2.0-OpenSSH_9.6', '', ''], /not an HTTP\/1.x status line/)
  bad(['HTTP/1.1 2x0 OK', '', ''], /status line/)
  bad(['HTTP/1.1 200 OK', 'Content-Length: 12a', '', ''], /bad Content-Length/)
  bad(['HTTP/1.1 200 OK', 'Content-Length: 1', 'Content-Length: 2', '', ''], /differing Content-Length/)
  bad(['HTTP/1.1 200 OK', 'Transfer-Encoding: chunked', '', 'zz', ''], /bad chunk size/)
  bad(['HTTP/1.1 200 OK', 'Transfer-Encoding: chunked', '', '2', 'abc', ''], /longer than its size/)
  bad(['HTTP/1.1 200 OK', 'Transfer-Encoding: chunked', '', 'fffffffffffff', ''], /too large/)
  const huge = new ResponseReader()
  huge.reset()
  const head = Buffer.from('HTTP/1.1 200 OK\r\nX-Big: ' + 'a'.repeat(70 * 1024))
  t.throws(() => huge.execute(head, 0, head.length), /head over/)
})

t.test('cache outcome from the head bytes: X-Cache, Cache-Status, repeated lines', async t => {
  everyCut(t, crlf(['HTTP/1.1 200 OK', 'x-cache: HIT', 'Cache-Status: flashcrowd; hit; ttl=20', 'Content-Length: 1', '', 'a']), { cache: { state: 'HIT', collapsed: false } })
  everyCut(t, crlf(['HTTP/1.1 200 OK', 'X-Cache: MISS', 'cache-status: flashcrowd; fwd=uri-miss; collapsed', 'Content-Length: 1', '', 'a']), { cache: { state: 'MISS', collapsed: true } })
  everyCut(t, crlf(['HTTP/1.1 200 OK', 'Cache-Status: origin; fwd=miss', 'X-Cachet: PASS', 'CACHE-STATUS: edge; hit', 'Content-Length: 0', '', '']), { cache: { state: 'HIT', collapsed: false } })
  everyCut(t, crlf(['HTTP/1.1 100 Continue', 'X-Cache: HIT', '', 'HTTP/1.1 200 OK', 'Content-Length: 0', '', '']), { status: 200, cache: { state: null, collapsed: false } })
})

t.test('the byte scanner reads Cache-Status and X-Cache as parseCacheValues does', async t => {
  const xs = [undefined, '', 'HIT', 'hit', ' stale', 'MISS, HIT', 'PASS from edge', 'BOGUS', ',HIT']
  const css = [undefined, '', 'flashcrowd; hit', 'c; fwd=miss; stored', 'c; fwd=uri-miss; collapsed', 'c; fwd=bypass', 'c; fwd="method"', 'c; FWD=Request',
    'a; fwd=miss, b; hit', 'hit', 'c;hit;collapsed', 'c; fwd=miss; ttl=12, d; fwd=bypass', ' c ; collapsed ; fwd = miss', 'c; fwd=', 'c; fwd="', ';hit', 'c; detail=hit; fwd=stale']
  let n = 0
  for (const x of xs) {
    for (const cs of css) {
      const scan = new CacheHeadScan()
      scan.reset()
      if (x !== undefined) { const b = Buffer.from(x); scan.xCache(b, 0, b.length) }
      if (cs !== undefined) { const b = Buffer.from(cs); scan.cacheStatus(b, 0, b.length) }
      t.same(scan.result(), parseCacheValues(x, cs === '' ? undefined : cs), `X-Cache ${JSON.stringify(x)} · Cache-Status ${JSON.stringify(cs)}`)
      n++
    }
  }
  // repeated Cache-Status lines are one list
  const scan = new CacheHeadScan()
  scan.reset()
  for (const v of ['origin; fwd=miss', 'edge; collapsed']) { const b = Buffer.from(v); scan.cacheStatus(b, 0, b.length) }
  t.same(scan.result(), parseCacheValues(undefined, 'origin; fwd=miss, edge; collapsed'))
  t.equal(n, xs.length * css.length)
})
