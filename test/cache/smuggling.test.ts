/**
 * Raw-socket request-smuggling and cache-poisoning vectors (design §2.5):
 * each is rejected or harmless, and none reaches the origin as a second
 * request.
 */
import t from 'tap'
import net from 'node:net'
import { startOrigin, startCache, send, closeAgent, rawExchangeFor } from './fixtures.js'

t.teardown(closeAgent)

/** Writes `text` and collects until the cache closes the connection (every vector here ends with a close), or `waitMs` passes. */
async function raw (port: number, text: string, waitMs = 5000): Promise<string> {
  return (await rawExchangeFor(`http://127.0.0.1:${port}`, text, waitMs)).data
}

const statusLines = (s: string) => s.match(/HTTP\/1\.1 \d{3}/g) ?? []

t.test('smuggling vectors are rejected and never reach the origin', async (t) => {
  const origin = await startOrigin((req, res) => {
    req.resume()
    req.on('end', () => { res.setHeader('cache-control', 'max-age=60'); res.end(`origin saw ${req.method} ${req.url}`) })
  })
  const cache = await startCache(origin.url)
  t.teardown(async () => { await cache.close(); await origin.close() })
  const port = Number(new URL(cache.url).port)
  const smuggled = 'GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n'
  const vectors: Record<string, string> = {
    'CL.TE': `POST /form HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n${smuggled}`,
    'TE.CL': `POST /form HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n5c\r\n${smuggled}0\r\n\r\n`,
    'duplicate Content-Length': `POST /form HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 40\r\n\r\nabcd${smuggled}`,
    'same duplicate Content-Length': `POST /form HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 4\r\n\r\nabcd${smuggled}`,
    'bad chunk size': `POST /form HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n${smuggled}`,
    'chunk size overflow': `POST /form HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff1\r\nabc\r\n0\r\n\r\n${smuggled}`,
    'TE obfuscated (space before colon)': `POST /form HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n${smuggled}`,
    'TE not chunked-final': `POST /form HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n${smuggled}`,
    'TE gzip only': `POST /form HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n${smuggled}`,
    'obs-fold': `GET /page HTTP/1.1\r\nHost: x\r\nX-Long: a\r\n b\r\n\r\n${smuggled}`,
    'obs-fold on Transfer-Encoding': `POST /form HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\r\n chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n${smuggled}`,
    'bare LF': `GET /page HTTP/1.1\nHost: x\n\n${smuggled}`,
    'bare LF in headers': `GET /page HTTP/1.1\r\nHost: x\nX-A: b\r\n\r\n${smuggled}`,
    'two Host headers': `GET /page HTTP/1.1\r\nHost: x\r\nHost: evil\r\n\r\n${smuggled}`,
    'header too large': `GET /page HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n${smuggled}`
  }
  for (const [name, text] of Object.entries(vectors)) {
    const before = origin.count()
    const answer = await raw(port, text)
    const lines = statusLines(answer)
    t.match(lines[0] ?? '', /HTTP\/1\.1 4\d\d/, `${name}: rejected with a 4xx (${lines[0]})`)
    t.equal(lines.length, 1, `${name}: one answer only, the connection is closed`)
    t.equal(origin.count() - before, 0, `${name}: nothing reached the origin`)
  }
  t.equal(origin.count('/smuggled'), 0, 'no smuggled request ever reached the origin')
  t.equal(origin.count(), 0)
})

t.test('an honest request body is forwarded once, and the next request on the connection is separate', async (t) => {
  const origin = await startOrigin((req, res) => {
    let body = ''
    req.on('data', (c) => { body += c })
    req.on('end', () => { res.setHeader('cache-control', 'max-age=60'); res.end(`${req.method} ${req.url} ${body}`) })
  })
  const cache = await startCache(origin.url)
  t.teardown(async () => { await cache.close(); await origin.close() })
  const port = Number(new URL(cache.url).port)
  const answer = await raw(port, 'POST /form HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n0\r\n\r\nGET /next HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n', 5000)
  t.equal(statusLines(answer).length, 2)
  t.match(answer, /POST \/form abcd/)
  t.match(answer, /GET \/next/)
  // Pipelined requests are dispatched side by side; each reached the origin once, as itself.
  t.same(origin.requests.map((r) => `${r.method} ${r.url}`).sort(), ['GET /next', 'POST /form'])
  const post = origin.requests.find((r) => r.method === 'POST')!
  t.notOk(post.headers['transfer-encoding'], 'the body was re-framed with Content-Length')
  t.equal(post.headers['content-length'], '4')
})

t.test('cache poisoning: unkeyed X-Forwarded-Host / Forwarded never reach the origin', async (t) => {
  const origin = await startOrigin((req, res) => {
    res.setHeader('cache-control', 'public, s-maxage=60')
    const host = req.headers['x-forwarded-host'] ?? req.headers.forwarded ?? req.headers.host
    res.end(`<script src="//${host}/app.js"></script> xff=${req.headers['x-forwarded-for']}`)
  })
  const cache = await startCache(origin.url)
  t.teardown(async () => { await cache.close(); await origin.close() })
  const evil = await send(cache.url + '/home', { headers: { 'x-forwarded-host': 'evil.example', forwarded: 'host=evil.example', 'x-forwarded-for': '6.6.6.6' } })
  t.notMatch(evil.body, /evil/, 'the attacker\'s host never reached the origin')
  t.match(evil.body, /xff=127\.0\.0\.1$/, 'X-Forwarded-For comes from the socket, not the client')
  const victim = await send(cache.url + '/home')
  t.equal(victim.headers['x-cache'], 'HIT')
  t.notMatch(victim.body, /evil/)
  t.equal(origin.requests[0].headers['x-forwarded-host'], undefined)
  t.equal(origin.requests[0].headers.forwarded, undefined)
  t.equal(origin.requests[0].headers['x-forwarded-for'], '127.0.0.1')
})

t.test('size limits: URL and header block', async (t) => {
  const origin = await startOrigin((req, res) => res.end('x'))
  const cache = await startCache(origin.url, { CACHE_MAX_URL_BYTES: '100' })
  t.teardown(async () => { await cache.close(); await origin.close() })
  t.equal((await send(cache.url + '/' + 'a'.repeat(200))).status, 414)
  t.equal(origin.count(), 0)
})

t.test('slow clients: an unfinished request head is cut off', async (t) => {
  const origin = await startOrigin((req, res) => res.end('x'))
  const cache = await startCache(origin.url, { CACHE_HEADERS_TIMEOUT_MS: '300', CACHE_REQUEST_TIMEOUT_MS: '300' })
  t.teardown(async () => { await cache.close(); await origin.close() })
  const port = Number(new URL(cache.url).port)
  const started = Date.now()
  const answer = await new Promise<string>((resolve) => {
    const socket = net.connect(port, '127.0.0.1', () => socket.write('GET / HTTP/1.1\r\nHost: x\r\nX-Slow: '))
    let data = ''
    socket.on('data', (d) => { data += d })
    socket.on('close', () => resolve(data))
    setTimeout(() => { socket.destroy(); resolve('still open') }, 5000)
  })
  t.not(answer, 'still open', `the socket was closed by the cache after ${Date.now() - started} ms`)
  t.equal(origin.count(), 0)
})

t.test('issue 23: once an answer closes the connection, nothing after it is processed (RFC 9112 §9.6)', async (t) => {
  for (const front of ['true', 'false']) {
    const origin = await startOrigin((req, res) => {
      req.resume()
      req.on('end', () => { res.setHeader('cache-control', 'public, max-age=60'); res.end(`origin saw ${req.method} ${req.url}`) })
    })
    // A slow origin for /slow: a closing answer decided late still stops what was pipelined behind it.
    const cache = await startCache(origin.url, { CACHE_HIT_FRONT: front, CACHE_MAX_BODY_BYTES: '1024' })
    t.teardown(async () => { await cache.close(); await origin.close() })
    const port = Number(new URL(cache.url).port)
    const behind = (n: number) => `GET /m/${n} HTTP/1.1\r\nHost: site.test\r\n\r\n`
    const vectors: Array<[string, string, number]> = [
      ['no Host', `GET /p/1 HTTP/1.1\r\nX-Fz: a\r\n\r\n${behind(1)}`, 400],
      ['Transfer-Encoding: identity', `GET /p/1 HTTP/1.1\r\nHost: site.test\r\nTransfer-Encoding: identity\r\n\r\n${behind(2)}`, 400],
      ['an Expect node does not know', `GET /p/1 HTTP/1.1\r\nHost: site.test\r\nExpect: x-unknown\r\n\r\n${behind(3)}`, 417],
      ['a body too large, refused after a read', `POST /p/1 HTTP/1.1\r\nHost: site.test\r\nTransfer-Encoding: chunked\r\n\r\n800\r\n${'a'.repeat(0x800)}\r\n0\r\n\r\n${behind(4)}`, 413],
      ['a body declared too large', `POST /p/1 HTTP/1.1\r\nHost: site.test\r\nContent-Length: 2000\r\n\r\n${'a'.repeat(2000)}${behind(5)}`, 413],
      ['the client\'s own Connection: close', `GET /p/2 HTTP/1.1\r\nHost: site.test\r\nConnection: close\r\n\r\n${behind(6)}`, 200],
      ['two Host fields, a body, junk', 'GET /p/1 HTTP/1.1\r\nHost: s\r\nHost: t\r\nContent-Length: 3\r\n\r\nabcjunk\r\n\r\n', 400],
      ['no Host, a body, junk', 'GET /p/1 HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcjunk\r\n\r\n', 400]
    ]
    for (const [name, text, status] of vectors) {
      const answer = await raw(port, text)
      t.same(statusLines(answer), [`HTTP/1.1 ${status}`], `front=${front}, ${name}: one answer, ${status}`)
      t.match(answer, /\r\nconnection: close\r\n/i, `front=${front}, ${name}: it closes the connection`)
    }
    t.same(origin.requests.map((r) => r.url), ['/p/2'], `front=${front}: nothing pipelined behind a closing answer reached the origin`)
  }
})
