import t from 'tap'
import { normalizeAuthority } from '../../cache/authority.js'
import { startOrigin, startCache, send, closeAgent, rawExchange, finalAnswer } from './fixtures.js'

t.teardown(closeAgent)

t.test('normalizeAuthority: RFC 3986 host [":" port], normalised', async (t) => {
  const ok: Array<[string, string]> = [
    ['example.org', 'example.org'],
    ['Example.ORG', 'example.org'],
    ['example.org.', 'example.org'],
    ['example.org:80', 'example.org'],
    ['example.org:080', 'example.org'],
    ['example.org:', 'example.org'],
    ['example.org:8080', 'example.org:8080'],
    ['127.0.0.1:8080', '127.0.0.1:8080'],
    ['[::1]:8080', '[::1]:8080'],
    ['[::1]', '[::1]'],
    ['[2001:DB8::1]:80', '[2001:db8::1]'],
    ['', '']
  ]
  for (const [input, want] of ok) t.equal(normalizeAuthority(input), want, JSON.stringify(input))
  t.equal(normalizeAuthority('example.org:443', 443), 'example.org', 'the scheme\'s own default port')
  const bad = [
    '127.0.0.1:8080/cacheable', 'host/path', 'host?q', 'host#f', 'user@host', 'a b', 'host:abc', 'host:99999',
    'host:80:80', '[::1', '[::1]x', '[fe80::1%25eth0]', '[v1.x]', 'host..', '.', ':80', 'ho\tst', 'h%zz', 'host\\x'
  ]
  for (const input of bad) t.equal(normalizeAuthority(input), null, JSON.stringify(input))
})

t.test('issue 10: a Host carrying a path can no longer replace another page', async (t) => {
  const origin = await startOrigin((req, res) => {
    res.setHeader('cache-control', 'public, s-maxage=300')
    res.statusCode = req.url === '/cacheable/victim' ? 200 : 404
    res.end(`${req.headers.host} ${req.url}`)
  })
  const cache = await startCache(origin.url)
  t.teardown(async () => { await cache.close(); await origin.close() })
  const port = new URL(cache.url).port
  const good = await send(cache.url + '/cacheable/victim')
  t.equal(good.status, 200)
  const attack = finalAnswer(await rawExchange(cache.url, `GET /victim HTTP/1.1\r\nHost: 127.0.0.1:${port}/cacheable\r\nConnection: close\r\n\r\n`))
  t.equal(attack.status, 400, 'a Host with a path is refused')
  t.equal(origin.count('/victim'), 0, 'nothing was forwarded')
  for (const host of [`127.0.0.1:${port}?x`, `u@127.0.0.1:${port}`, `127.0.0.1:${port}#/cacheable`, '127.0.0.1:70000']) {
    const a = finalAnswer(await rawExchange(cache.url, `GET /victim HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`))
    t.equal(a.status, 400, host)
  }
  const after = await send(cache.url + '/cacheable/victim')
  t.equal(after.status, 200)
  t.equal(after.headers['x-cache'], 'HIT', 'the stored page is untouched')
  t.equal(after.body, good.body)
  t.equal(origin.count(), 1)
})

t.test('issue 10: case, trailing dot and default port share one key, and the origin sees that form', async (t) => {
  const origin = await startOrigin((req, res) => {
    res.setHeader('cache-control', 'public, s-maxage=300')
    res.end(`host=${req.headers.host}`)
  })
  const cache = await startCache(origin.url)
  t.teardown(async () => { await cache.close(); await origin.close() })
  const spellings = ['Site.Example', 'site.example.', 'site.example:80', 'SITE.EXAMPLE.:080']
  const answers = []
  for (const host of spellings) answers.push(finalAnswer(await rawExchange(cache.url, `GET /p HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`)))
  t.ok(answers.every((a) => a.status === 200 && a.body === 'host=site.example'), 'every spelling answered from the origin\'s answer for site.example')
  t.equal(origin.count('/p'), 1, 'one key: one fetch')
  t.ok(answers.slice(1).every((a) => /x-cache: HIT/i.test(a.head)))
  const absolute = finalAnswer(await rawExchange(cache.url, 'GET http://SITE.example.:80/p HTTP/1.1\r\nHost: other.example\r\nConnection: close\r\n\r\n'))
  t.equal(absolute.body, 'host=site.example', 'absolute-form: the same normalised authority')
  t.match(absolute.head, /x-cache: HIT/i)
  const userinfo = finalAnswer(await rawExchange(cache.url, 'GET http://user:pw@site.example/p HTTP/1.1\r\nHost: site.example\r\nConnection: close\r\n\r\n'))
  t.equal(userinfo.status, 400, 'userinfo in an absolute-form target')
})
