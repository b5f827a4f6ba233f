/**
 * Issue 10, finding 7: only an allowlist of forwarding fields reaches the
 * origin, and a field the client names in Connection can neither store nor
 * select a variant.
 */
import t from 'tap'
import { startOrigin, startCache, send, closeAgent, rawExchange, finalAnswer } from './fixtures.js'
import { FORWARDING_ALLOWLIST, isForwardingField } from '../../cache/headers.js'

t.teardown(closeAgent)

const SPOOFED: Record<string, string> = {
  'x-forwarded-scheme': 'javascript',
  'x-forwarded-prefix': '/evil',
  'x-forwarded-ssl': 'on',
  'x-forwarded-host': 'evil.example',
  'x-forwarded-port': '666',
  'x-forwarded-server': 'evil',
  'x-forwarded-uri': '/evil',
  'x-original-host': 'evil.example',
  'x-original-url': '/admin',
  'x-real-ip': '6.6.6.6',
  'true-client-ip': '6.6.6.6',
  'x-client-ip': '6.6.6.6',
  forwarded: 'for=6.6.6.6;host=evil.example;proto=https',
  'x-http-method-override': 'DELETE',
  'front-end-https': 'on'
}

t.test('issue 10: forwarding fields a client writes never reach the origin; the allowlist is what the cache writes', async (t) => {
  const origin = await startOrigin((req, res) => {
    res.setHeader('cache-control', 'public, s-maxage=60')
    // An origin that builds links from what proxies tell it (Spring, Symfony, Rails all can).
    const prefix = req.headers['x-forwarded-prefix'] ?? ''
    const scheme = req.headers['x-forwarded-scheme'] ?? 'http'
    const host = req.headers['x-original-host'] ?? 'site'
    res.end(`<a href="${scheme}://${host}${prefix}/next">next</a>`)
  })
  const cache = await startCache(origin.url)
  t.teardown(async () => { await cache.close(); await origin.close() })

  const attacker = await send(cache.url + '/home', { headers: { ...SPOOFED, 'x-requested-with': 'XMLHttpRequest', 'x-api-key': 'k1', via: '1.1 corporate-proxy' } })
  t.equal(attacker.body, '<a href="http://site/next">next</a>', 'the origin rendered as if no proxy had spoken')
  const seen = origin.requests[0].headers
  for (const name of Object.keys(SPOOFED)) t.equal(seen[name], undefined, `${name} was dropped`)
  t.equal(seen['x-forwarded-for'], '127.0.0.1', 'X-Forwarded-For is the socket\'s peer')
  t.equal(seen['x-forwarded-proto'], 'http')
  t.equal(seen.via, '1.1 corporate-proxy, 1.1 flashcrowd', 'Via gets our hop appended')
  t.equal(seen['x-requested-with'], 'XMLHttpRequest', 'ordinary end-to-end fields still pass')
  t.equal(seen['x-api-key'], 'k1')
  const forwarding = Object.keys(seen).filter(isForwardingField).sort()
  t.same(forwarding, [...FORWARDING_ALLOWLIST].sort(), 'the only forwarding fields the origin saw are the allowlisted ones')

  const victim = await send(cache.url + '/home')
  t.equal(victim.headers['x-cache'], 'HIT')
  t.notMatch(victim.body, /evil|javascript/)
  t.equal(origin.count('/home'), 1)
})

t.test('issue 10: a field named in Connection can neither store nor select a Vary variant', async (t) => {
  const origin = await startOrigin((req, res) => {
    res.setHeader('cache-control', 'public, s-maxage=60')
    res.setHeader('vary', 'X-Variant')
    res.end(`variant=${req.headers['x-variant'] ?? 'none'}`)
  })
  const cache = await startCache(origin.url)
  t.teardown(async () => { await cache.close(); await origin.close() })
  const nominated = async (path: string) => finalAnswer(await rawExchange(cache.url, `GET ${path} HTTP/1.1\r\nHost: site\r\nX-Variant: b\r\nConnection: close, X-Variant\r\n\r\n`))

  // Store: the attacker's X-Variant is hop-by-hop, so the origin renders "none";
  // that answer must not be stored as the variant for X-Variant: b.
  const attacker = await nominated('/store')
  t.equal(attacker.status, 200)
  t.equal(attacker.body, 'variant=none', 'the origin never saw the nominated field')
  t.equal(origin.requests[0].headers['x-variant'], undefined)
  const victim = await send(cache.url + '/store', { headers: { host: 'site', 'x-variant': 'b' } })
  t.equal(victim.body, 'variant=b', 'a client that really sends X-Variant: b gets the b variant')
  const plain = await send(cache.url + '/store', { headers: { host: 'site' } })
  t.equal(plain.body, 'variant=none')
  t.equal(plain.headers['x-cache'], 'HIT', 'the attacker\'s fetch was stored as the variant without the field')

  // Select: with the b variant stored, naming the field in Connection does not reach it.
  await send(cache.url + '/select', { headers: { host: 'site', 'x-variant': 'b' } })
  const selecting = await nominated('/select')
  t.equal(selecting.body, 'variant=none', 'the nominated field did not select the stored b variant')
  const again = await send(cache.url + '/select', { headers: { host: 'site', 'x-variant': 'b' } })
  t.equal(again.body, 'variant=b')
  t.equal(again.headers['x-cache'], 'HIT', 'the b variant is untouched')
})
