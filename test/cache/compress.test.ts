import t from 'tap'
import { gunzipSync, brotliDecompressSync } from 'node:zlib'
import { normalizeAcceptEncoding, isCompressible, etagForCoding } from '../../cache/compress.js'
import { startOrigin, startCache, send, closeAgent } from './fixtures.js'

t.teardown(closeAgent)

t.test('Accept-Encoding normalization', async (t) => {
  t.equal(normalizeAcceptEncoding(undefined), 'identity')
  t.equal(normalizeAcceptEncoding('gzip, deflate, br'), 'br')
  t.equal(normalizeAcceptEncoding('gzip'), 'gzip')
  t.equal(normalizeAcceptEncoding('br;q=0, gzip;q=0.5'), 'gzip')
  t.equal(normalizeAcceptEncoding('gzip;q=0'), 'identity')
  t.equal(normalizeAcceptEncoding('*'), 'br')
  t.equal(normalizeAcceptEncoding('identity'), 'identity')
  t.ok(isCompressible('text/html; charset=utf-8', undefined, 5000, 1e6))
  t.notOk(isCompressible('image/png', undefined, 5000, 1e6))
  t.notOk(isCompressible('text/html', 'gzip', 5000, 1e6))
  t.notOk(isCompressible('text/html', undefined, 5000, 1e6, 'public, No-Transform, max-age=60'), 'no-transform: not the cache\'s to recode (RFC 9110 §7.7)')
  t.ok(isCompressible('text/html', undefined, 5000, 1e6, 'public, max-age=60'))
  t.equal(etagForCoding('"v1"', 'identity'), '"v1"')
  t.equal(etagForCoding('"v1"', 'gzip'), 'W/"v1"')
  t.equal(etagForCoding('W/"v1"', 'br'), 'W/"v1"')
})

t.test('each coding its own validator (RFC 9110 §8.8.3): the cache\'s codings carry the origin\'s ETag made weak, and revalidate and range with it', async (t) => {
  const html = '<p>one representation per coding</p>\n'.repeat(200)
  const origin = await startOrigin((req, res) => {
    res.setHeader('cache-control', 'public, max-age=60')
    res.setHeader('content-type', 'text/html')
    res.setHeader('etag', '"v1"')
    if (req.url === '/kept') res.setHeader('cache-control', 'public, max-age=60, no-transform')
    res.end(html)
  })
  const cache = await startCache(origin.url)
  t.teardown(async () => { await cache.close(); await origin.close() })
  const plain = await send(cache.url + '/p')
  const gz = await send(cache.url + '/p', { headers: { 'accept-encoding': 'gzip' } })
  const br = await send(cache.url + '/p', { headers: { 'accept-encoding': 'br' } })
  t.equal(plain.headers.etag, '"v1"', 'the origin\'s representation keeps its strong ETag')
  t.equal(gz.headers['content-encoding'], 'gzip')
  t.equal(gz.headers.etag, 'W/"v1"')
  t.equal(br.headers['content-encoding'], 'br')
  t.equal(br.headers.etag, 'W/"v1"')
  const again = await send(cache.url + '/p', { headers: { 'accept-encoding': 'gzip', 'if-none-match': 'W/"v1"' } })
  t.equal(again.status, 304, 'a client revalidating the gzip copy with its ETag gets 304')
  t.equal(again.headers.etag, 'W/"v1"', 'carrying the ETag of the coding it has')
  t.equal((await send(cache.url + '/p', { headers: { 'if-none-match': '"v1"' } })).status, 304)
  const ranged = await send(cache.url + '/p', { headers: { 'accept-encoding': 'gzip', range: 'bytes=0-9', 'if-range': 'W/"v1"' } })
  t.equal(ranged.status, 200, 'a weak validator never satisfies If-Range: the whole body')
  const strong = await send(cache.url + '/p', { headers: { range: 'bytes=0-9', 'if-range': '"v1"' } })
  t.equal(strong.status, 206, 'the strong one does, on the identity body')
  t.equal(strong.body, html.slice(0, 10))
  const kept = await send(cache.url + '/kept', { headers: { 'accept-encoding': 'gzip, br' } })
  t.equal(kept.headers['content-encoding'], undefined, 'no-transform: sent as the origin sent it')
  t.equal(kept.headers.etag, '"v1"')
  t.equal(kept.body, html)
  t.equal(origin.count('/p'), 1)
})

t.test('text bodies compressed once, served by Accept-Encoding', async (t) => {
  const html = '<p>hello compression</p>\n'.repeat(400)
  const origin = await startOrigin((_req, res) => { res.setHeader('cache-control', 'max-age=60'); res.setHeader('content-type', 'text/html'); res.end(html) })
  const cache = await startCache(origin.url)
  t.teardown(async () => { await cache.close(); await origin.close() })
  // The miss comes from a client that accepts br: the origin is still asked
  // once, and everything below (identity included) comes from that object.
  const first = await send(cache.url + '/c', { headers: { 'accept-encoding': 'gzip, deflate, br' } })
  t.equal(first.headers['content-encoding'], 'br')
  t.equal(brotliDecompressSync(first.raw).toString(), html)
  const plain = await send(cache.url + '/c')
  t.equal(plain.body, html)
  t.equal(plain.headers['content-encoding'], undefined)
  t.equal(plain.headers.vary, 'Accept-Encoding')
  const gz = await send(cache.url + '/c', { headers: { 'accept-encoding': 'gzip, deflate' } })
  t.equal(gz.headers['content-encoding'], 'gzip')
  t.equal(gunzipSync(gz.raw).toString(), html)
  t.ok(gz.raw.length < html.length / 5)
  t.equal(Number(gz.headers['content-length']), gz.raw.length)
  const br = await send(cache.url + '/c', { headers: { 'accept-encoding': 'gzip, deflate, br' } })
  t.equal(br.headers['content-encoding'], 'br')
  t.equal(brotliDecompressSync(br.raw).toString(), html)
  t.equal(origin.count(), 1, 'one fetch, all codings from the store')
  t.equal(origin.requests[0].headers['accept-encoding'], 'br', 'the one fetch came from the br client (normalized)')
  t.equal(plain.headers['x-cache'], 'HIT', 'and the identity client was served from it')
})

/** A lenient negotiator like many origins have: parseFloat on q, so `q=1.2.3` reads as 1.2. */
function lenientNegotiate (header: string | undefined): 'br' | 'gzip' | undefined {
  if (!header) return undefined
  let best: 'br' | 'gzip' | undefined
  let bestQ = 0
  for (const part of header.split(',')) {
    const [name, ...params] = part.trim().toLowerCase().split(';')
    const q = params.reduce((acc, p) => p.trim().startsWith('q=') ? parseFloat(p.trim().slice(2)) : acc, 1)
    if ((name === 'br' || name === 'gzip') && q > bestQ) { best = name; bestQ = q }
  }
  return best
}

t.test('issue: Accept-Encoding is forwarded normalized, so the origin negotiates on the value the key holds', async (t) => {
  const origin = await startOrigin((req, res) => {
    const enc = lenientNegotiate(req.headers['accept-encoding'])
    res.setHeader('cache-control', 'public, max-age=31536000, immutable')
    res.setHeader('content-type', 'image/png') // not compressed by the cache: only the origin's codings
    res.setHeader('vary', 'Accept-Encoding')
    if (enc) res.setHeader('content-encoding', enc)
    res.end(enc ? `<${enc} bytes>` : 'plain')
  })
  const cache = await startCache(origin.url)
  t.teardown(async () => { await cache.close(); await origin.close() })
  // `q=1.2.3` is not a qvalue: we read it as 0 (identity), a lenient origin as 1.2 (br).
  const odd = await send(cache.url + '/a.png', { headers: { 'accept-encoding': 'br;q=1.2.3' } })
  t.equal(origin.requests[0].headers['accept-encoding'], 'identity', 'forwarded as the key normalized it')
  t.equal(odd.headers['content-encoding'], undefined)
  const plain = await send(cache.url + '/a.png')
  t.equal(plain.headers['x-cache'], 'HIT', 'no Accept-Encoding shares the identity variant')
  t.equal(plain.headers['content-encoding'], undefined, 'never a coding the client did not ask for')
  t.equal(plain.body, 'plain')
  const identity = await send(cache.url + '/a.png', { headers: { 'accept-encoding': 'identity' } })
  t.equal(identity.headers['x-cache'], 'HIT', '`identity` shares it too')

  const gz = await send(cache.url + '/a.png', { headers: { 'accept-encoding': '*;q=0.5, br;q=0' } })
  t.equal(origin.requests[1].headers['accept-encoding'], 'gzip', 'a wildcard is forwarded as the coding it selects')
  t.equal(gz.headers['content-encoding'], 'gzip')
  const gz2 = await send(cache.url + '/a.png', { headers: { 'accept-encoding': 'gzip' } })
  t.equal(gz2.headers['x-cache'], 'HIT')
  t.equal(gz2.headers['content-encoding'], 'gzip')
  t.equal(origin.count(), 2)
})
