import t from 'tap'
import { startOrigin, startCache, send, closeAgent } from './fixtures.js'

t.teardown(closeAgent)

t.test('issue 10: a Range on a stored full response is answered 206 / 416 from the store (RFC 9110 §14)', async (t) => {
  const origin = await startOrigin((req, res) => {
    res.setHeader('cache-control', 'public, s-maxage=300')
    res.setHeader('etag', '"digits"')
    res.setHeader('last-modified', 'Sun, 06 Nov 1994 08:49:37 GMT')
    res.setHeader('content-type', 'text/plain')
    res.end('0123456789')
  })
  const cache = await startCache(origin.url)
  t.teardown(async () => { await cache.close(); await origin.close() })
  const miss = await send(cache.url + '/d', { headers: { range: 'bytes=2-5' } })
  t.equal(miss.status, 206, 'a miss is fetched in full and the range cut from it')
  t.equal(miss.body, '2345')
  t.equal(origin.requests[0].headers.range, undefined, 'the origin was asked for the whole')
  const cases: Array<[string, number, string, string | undefined]> = [
    ['bytes=2-5', 206, '2345', 'bytes 2-5/10'],
    ['bytes=7-', 206, '789', 'bytes 7-9/10'],
    ['bytes=-3', 206, '789', 'bytes 7-9/10'],
    ['bytes=8-100', 206, '89', 'bytes 8-9/10'],
    ['bytes=10-', 416, '', 'bytes */10'],
    ['bytes=-0', 416, '', 'bytes */10'],
    ['bytes=5-2', 200, '0123456789', undefined],
    ['items=0-1', 200, '0123456789', undefined],
    ['bytes=0-1,4-5', 200, '0123456789', undefined]
  ]
  for (const [range, status, body, contentRange] of cases) {
    const a = await send(cache.url + '/d', { headers: { range } })
    t.equal(a.status, status, range)
    t.equal(a.body, body, `${range}: body`)
    t.equal(a.headers['content-range'], contentRange, `${range}: Content-Range`)
    if (status === 206) t.equal(a.headers['content-length'], String(body.length))
    t.equal(a.headers['x-cache'], 'HIT')
  }
  t.equal((await send(cache.url + '/d', { headers: { range: 'bytes=0-1', 'if-range': '"digits"' } })).status, 206, 'If-Range with the strong ETag')
  t.equal((await send(cache.url + '/d', { headers: { range: 'bytes=0-1', 'if-range': 'Sun, 06 Nov 1994 08:49:37 GMT' } })).status, 206, 'If-Range with the Last-Modified date')
  const changed = await send(cache.url + '/d', { headers: { range: 'bytes=0-1', 'if-range': '"other"' } })
  t.equal(changed.status, 200, 'If-Range that does not match: the whole representation')
  t.equal(changed.body, '0123456789')
  t.equal(origin.count('/d'), 1)
})
