import t from 'tap'
import { gunzipSync, brotliDecompressSync } from 'node:zlib'
import { normalizeAcceptEncoding, isCompressible } from '../../cache/compress.js'
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
})

t.test('text bodies compressed once, served by Accept-Encoding', async (t) => {
  const html = '<p>hello compression</p>\n'.repeat(400)
  const origin = await startOrigin((_req, res) => { res.setHeader('cache-control', 'max-age=60'); res.setHeader('content-type', 'text/html'); res.end(html) })
  const cache = await startCache(origin.url)
  t.teardown(async () => { await cache.close(); await origin.close() })
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
  t.notOk(origin.requests[0].headers['accept-encoding'] === 'br', 'fetched once for everyone')
})
