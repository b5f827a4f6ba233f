/**
 * Issue 11: the visitor's address through the cache. The cache appends its
 * socket peer to X-Forwarded-For and believes what came in only from
 * CACHE_TRUSTED_PROXIES; a client sending X-Forwarded-For itself is seen as
 * its socket address. Clients bind 127.0.0.2 / 127.0.0.3; the "load
 * balancer" is 127.0.0.1.
 */
import t, { type Test } from 'tap'
import { startCache, startOrigin, closeAgent } from './fixtures.js'
import { loadCacheConfig } from '../../cache/config.js'
import { compileTrust } from '../../common/trusted-proxies.js'
import { requestFrom as from } from '../helpers/source-address.js'

t.teardown(closeAgent)

/** An origin that answers with the X-Forwarded-For it got (uncacheable, so every request reaches it). */
async function echoOrigin (t: Test) {
  const origin = await startOrigin((req, res) => {
    req.resume()
    req.on('end', () => {
      res.setHeader('cache-control', req.url === '/page' ? 'public, s-maxage=60' : 'no-store')
      res.end(`xff=${req.headers['x-forwarded-for'] ?? ''}`)
    })
  })
  t.teardown(origin.close)
  return origin
}

t.test('the edge (CACHE_TRUSTED_PROXIES=none): the socket peer is the visitor, a forged X-Forwarded-For is dropped', async (t) => {
  const origin = await echoOrigin(t)
  const cache = await startCache(origin.url)
  t.teardown(cache.close)
  const res = await from('127.0.0.2', cache.url + '/form', { method: 'POST', headers: { 'x-forwarded-for': '1.2.3.4', 'content-type': 'text/plain' }, body: 'x' })
  t.equal(res.body, 'xff=127.0.0.2', 'only the socket address goes upstream')
  const direct = await from('127.0.0.1', cache.url + '/api', { headers: { 'x-forwarded-for': '1.2.3.4' } })
  t.equal(direct.body, 'xff=127.0.0.1', 'not even loopback is believed unless configured')
})

t.test('behind a trusted load balancer: its entry is believed, the client\'s own is not', async (t) => {
  const origin = await echoOrigin(t)
  const cache = await startCache(origin.url, { CACHE_TRUSTED_PROXIES: '127.0.0.1' })
  t.teardown(cache.close)

  // The load balancer (127.0.0.1) appended the visitor it saw after what the visitor forged.
  const viaBalancer = await from('127.0.0.1', cache.url + '/api', { headers: { 'x-forwarded-for': '6.6.6.6, 198.51.100.9' } })
  t.equal(viaBalancer.body, 'xff=198.51.100.9, 127.0.0.1', 'the visitor and the balancer; the forged 6.6.6.6 is dropped')
  // Two header lines are one list (RFC 9110 §5.3).
  const twoLines = (await from('127.0.0.1', cache.url + '/api', { headers: { 'x-forwarded-for': ['6.6.6.6', '198.51.100.10'] } })).body
  t.equal(twoLines, 'xff=198.51.100.10, 127.0.0.1')

  // A client that is not the balancer cannot speak for anybody.
  const forged = await from('127.0.0.2', cache.url + '/form', { method: 'POST', headers: { 'x-forwarded-for': '1.2.3.4', 'content-type': 'text/plain' }, body: 'x' })
  t.equal(forged.body, 'xff=127.0.0.2', 'a client talking to the cache directly is its socket address')
  const forgedTrusted = await from('127.0.0.3', cache.url + '/api', { headers: { 'x-forwarded-for': '127.0.0.1' } })
  t.equal(forgedTrusted.body, 'xff=127.0.0.3', 'also when it claims to be the balancer')

  // Pages do not depend on it: a stored page is one object for every visitor.
  const first = await from('127.0.0.2', cache.url + '/page')
  const second = await from('127.0.0.3', cache.url + '/page', { headers: { 'x-forwarded-for': '9.9.9.9' } })
  t.equal(second.headers['x-cache'], 'HIT')
  t.equal(second.body, first.body)
  t.equal(origin.count('/page'), 1)
})

t.test('trust lists are validated', async (t) => {
  t.throws(() => loadCacheConfig({ UPSTREAMS: 'http://127.0.0.1:1', CACHE_TRUSTED_PROXIES: 'lb.example' }), { message: /CACHE_TRUSTED_PROXIES/ })
  t.equal(loadCacheConfig({ UPSTREAMS: 'http://127.0.0.1:1' }).CACHE_TRUSTED_PROXIES, 'none', 'the cache is the edge unless told otherwise')
  t.throws(() => compileTrust('10.0.0.0/33'), TypeError, 'a malformed CIDR stops start-up')
  const trust = compileTrust('10.0.0.0/8, ::1')
  t.ok(trust('10.1.2.3', 0))
  t.ok(trust('::1', 0))
  t.notOk(trust('11.0.0.1', 0))
  t.notOk(compileTrust('none')('127.0.0.1', 0))
})

t.test('behind a CDN: its client field names the visitor, believed only from its ranges (issue 24)', async (t) => {
  const origin = await echoOrigin(t)
  const cloudflare = await startCache(origin.url, { CDN_PROVIDER: 'cloudflare', CDN_TRUSTED_RANGES: '127.0.0.2/32' })
  t.teardown(cloudflare.close)
  const viaCdn = await from('127.0.0.2', cloudflare.url + '/api', { headers: { 'cf-connecting-ip': '198.51.100.7', 'x-forwarded-for': '6.6.6.6' } })
  t.equal(viaCdn.body, 'xff=198.51.100.7', 'the visitor the CDN names takes the edge\'s place')
  const forged = await from('127.0.0.9', cloudflare.url + '/api', { headers: { 'cf-connecting-ip': '198.51.100.7' } })
  t.equal(forged.body, 'xff=127.0.0.9', 'the same field from an address outside the ranges is ignored')
  const junk = await from('127.0.0.2', cloudflare.url + '/api', { headers: { 'cf-connecting-ip': 'not-an-address' } })
  t.equal(junk.body, 'xff=127.0.0.2', 'a field that names nobody leaves the edge as the visitor')
  const twice = await from('127.0.0.2', cloudflare.url + '/api', { headers: { 'cf-connecting-ip': ['198.51.100.7', '198.51.100.8'] } })
  t.equal(twice.body, 'xff=127.0.0.2', 'two copies of the field: neither is believed')

  const fastly = await startCache(origin.url, { CDN_PROVIDER: 'fastly', CDN_TRUSTED_RANGES: '127.0.0.2', CACHE_TRUSTED_PROXIES: '127.0.0.1' })
  t.teardown(fastly.close)
  // CDN → our load balancer (127.0.0.1, appending the edge it saw) → the cache.
  const behindLb = await from('127.0.0.1', fastly.url + '/api', { headers: { 'fastly-client-ip': '2001:db8::5', 'x-forwarded-for': '127.0.0.2' } })
  t.equal(behindLb.body, 'xff=2001:db8::5, 127.0.0.1', 'through a trusted balancer: the CDN hop is found behind it')

  const cloudfront = await startCache(origin.url, { CDN_PROVIDER: 'cloudfront', CDN_TRUSTED_RANGES: '127.0.0.2' })
  t.teardown(cloudfront.close)
  t.equal((await from('127.0.0.2', cloudfront.url + '/api', { headers: { 'cloudfront-viewer-address': '203.0.113.4:51234' } })).body, 'xff=203.0.113.4')
  t.equal((await from('127.0.0.2', cloudfront.url + '/api', { headers: { 'cloudfront-viewer-address': '2001:db8::9:443' } })).body, 'xff=2001:db8::9', 'IPv6 without brackets: the port follows the last colon')

  const edge = await startCache(origin.url, { CDN_PROVIDER: 'flashcrowd', CDN_TRUSTED_RANGES: '127.0.0.2' })
  t.teardown(edge.close)
  t.equal((await from('127.0.0.2', edge.url + '/api', { headers: { 'x-forwarded-for': '6.6.6.6, 198.51.100.20' } })).body, 'xff=198.51.100.20', 'a flashcrowd edge\'s own X-Forwarded-For entry names the visitor')
  t.equal((await from('127.0.0.9', edge.url + '/api', { headers: { 'x-forwarded-for': '198.51.100.20' } })).body, 'xff=127.0.0.9')

  t.throws(() => loadCacheConfig({ UPSTREAMS: 'http://127.0.0.1:1', CDN_PROVIDER: 'flashcrowd' }), { message: /CDN_TRUSTED_RANGES: required/ })
  t.throws(() => loadCacheConfig({ UPSTREAMS: 'http://127.0.0.1:1', CDN_PROVIDER: 'fastly', CDN_TRUSTED_RANGES: '10.0.0.0/40' }), { message: /CDN_TRUSTED_RANGES/ })
  t.throws(() => loadCacheConfig({ UPSTREAMS: 'http://127.0.0.1:1', CDN_PROVIDER: 'akamai' }), { message: /CDN_PROVIDER/ })
})
