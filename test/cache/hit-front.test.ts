/**
 * The hit front (cache/hit-front.ts): plain hits answered from the listening
 * socket; everything else, and every connection after its first other
 * request, answered by node's HTTP server exactly as without the front.
 * Raw sockets throughout; a second cache with CACHE_HIT_FRONT=false on an
 * identical origin is the reference for every answer.
 */
import t, { type Test } from 'tap'
import net from 'node:net'
import { parseFrontHead } from '../../cache/hit-front.js'
import { startOrigin, startCache, closeAgent, page, rawExchangeFor, type TestCache, type Origin } from './fixtures.js'

t.teardown(closeAgent)

const statusLines = (s: string) => (s.match(/HTTP\/1\.1 \d{3}/g) ?? []).map((l) => Number(l.slice(9)))
const BODY = 'a stored page\n'.repeat(40)

/** An origin whose pages are shared and fresh for a minute, and a cache in front of it counting the connections node's server got. */
async function pair (t: Test, env: Record<string, string> = {}): Promise<{ origin: Origin, cache: TestCache, handoffs: () => number }> {
  const origin = await startOrigin((req, res) => {
    if (req.url === '/private') { res.setHeader('cache-control', 'no-store'); res.end('private'); return }
    res.setHeader('cache-control', 'public, max-age=60')
    res.setHeader('etag', '"v1"')
    res.setHeader('content-type', 'text/plain')
    res.end(req.url === '/big' ? Buffer.alloc(1024 * 1024, 97) : BODY)
  })
  const cache = await startCache(origin.url, env)
  let handoffs = 0
  cache.app.server.on('connection', () => { handoffs++ })
  t.teardown(async () => { await cache.close(); await origin.close() })
  return { origin, cache, handoffs: () => handoffs }
}

/** One connection; each request written on its own once the answer before it is complete. */
async function sequence (url: string, requests: string[]): Promise<string[]> {
  const socket = net.connect(Number(new URL(url).port), '127.0.0.1')
  await new Promise<void>((resolve, reject) => { socket.once('connect', resolve); socket.once('error', reject) })
  socket.setEncoding('latin1')
  let buffer = ''
  const answers: string[] = []
  for (const text of requests) {
    buffer = ''
    socket.write(text)
    const answer = await new Promise<string>((resolve, reject) => {
      const onData = (d: string) => {
        buffer += d
        const end = buffer.indexOf('\r\n\r\n')
        if (end === -1) return
        const length = Number(/\r\ncontent-length: *(\d+)/i.exec(buffer.slice(0, end))?.[1] ?? 0)
        const headOnly = text.startsWith('HEAD') || /^HTTP\/1\.1 304/.test(buffer)
        if (buffer.length >= end + 4 + (headOnly ? 0 : length)) { socket.off('data', onData); resolve(buffer) }
      }
      socket.on('data', onData)
      socket.once('error', reject)
    })
    answers.push(answer)
  }
  socket.destroy()
  return answers
}

const get = (path: string, extra = '') => `GET ${path} HTTP/1.1\r\nHost: site.test\r\n${extra}\r\n`

t.test('plain hits are answered by the front, with the fields node\'s server would send', async (t) => {
  const front = await pair(t)
  const plain = await pair(t, { CACHE_HIT_FRONT: 'false' })
  for (const p of [front, plain]) await sequence(p.cache.url, [get('/page')])
  const before = front.handoffs()
  const [a, b, head] = await sequence(front.cache.url, [get('/page'), get('/page', 'Accept-Encoding: gzip\r\n'), `HEAD /page HTTP/1.1\r\nHost: site.test\r\n\r\n`])
  t.equal(front.handoffs(), before, 'three requests, none handed to node\'s server')
  const [reference] = await sequence(plain.cache.url, [get('/page')])
  const fields = (raw: string) => raw.slice(0, raw.indexOf('\r\n\r\n')).split('\r\n').slice(1).map((l) => l.toLowerCase()).filter((l) => !l.startsWith('date:')).sort()
  t.equal(a.slice(0, 17), 'HTTP/1.1 200 OK\r\n')
  t.same(fields(a), fields(reference), 'the same fields as node\'s server sends (Date aside: fetched at another moment)')
  t.match(a, /\r\ndate: [A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT\r\n/i)
  t.equal(a.slice(a.indexOf('\r\n\r\n') + 4), BODY, 'the body')
  t.match(a, /\r\nx-cache: HIT\r\n/)
  t.match(a, /\r\ncache-status: flashcrowd; hit; ttl=\d+\r\n/)
  t.match(b, /\r\ncontent-encoding: gzip\r\n/, 'the stored gzip coding for a client that accepts it')
  t.equal(head.slice(head.indexOf('\r\n\r\n') + 4), '', 'HEAD: no body')
  t.match(head, new RegExp(`\\r\\ncontent-length: ${Buffer.byteLength(BODY)}\\r\\n`), 'HEAD: the length a GET would get')
  t.equal(front.cache.app.engine.metrics.counters.hits, 3, 'counted as hits')
})

/** Who wrote an answer: the front writes its fields in lower case, node's server its own as `Connection: keep-alive`. */
const byFront = (answer: string) => answer.includes('\r\nconnection: keep-alive\r\n')

t.test('a miss, a reload or a purge in the narrow form is answered by node\'s server, and the connection stays at the front', async (t) => {
  const { origin, cache } = await pair(t)
  await sequence(cache.url, [get('/page')])
  // A load balancer's reused connection: everyone's requests, hits and misses.
  const answers = await sequence(cache.url, [get('/page'), get('/other'), get('/page'), get('/page', 'Cache-Control: no-cache\r\n'), get('/page'), get('/private'), get('/page')])
  t.same(answers.map((a) => statusLines(a)[0]), [200, 200, 200, 200, 200, 200, 200])
  t.same(answers.map((a) => /\r\nx-cache: (\w+)/i.exec(a)?.[1]), ['HIT', 'MISS', 'HIT', 'MISS', 'HIT', 'MISS', 'HIT'])
  t.same(answers.map(byFront), [true, false, true, false, true, false, true], 'hits at the front, the others by node\'s server, on one connection')
  t.equal(origin.count('/other'), 1)
  t.equal(origin.count('/page'), 2, 'the warm-up and the reload')
  t.same(origin.requests.map((r) => r.headers['x-forwarded-for']), ['127.0.0.1', '127.0.0.1', '127.0.0.1', '127.0.0.1'], 'node\'s server saw the real peer')
})

t.test('anything else hands the connection to node\'s server for good', async (t) => {
  const { cache, handoffs } = await pair(t)
  await sequence(cache.url, [get('/page')])
  const before = handoffs()
  const answers = await sequence(cache.url, [get('/page'), 'POST /form HTTP/1.1\r\nHost: site.test\r\nContent-Length: 2\r\n\r\nok', get('/page'), get('/page')])
  t.same(answers.map((a) => statusLines(a)[0]), [200, 200, 200, 200])
  t.same(answers.map(byFront), [true, false, false, false], 'after the POST, node\'s server answers everything')
  t.equal(handoffs() - before, 1, 'one hand-over')
})

t.test('a client that ends its side after a request for a stored page still gets the whole answer', async (t) => {
  const { cache } = await pair(t)
  await sequence(cache.url, [get('/page')])
  // (A miss is node's server's: like it, the front aborts a request whose client ended its side.)
  for (const path of ['/page']) {
    const socket = net.connect(Number(new URL(cache.url).port), '127.0.0.1')
    socket.setEncoding('latin1')
    let data = ''
    socket.on('data', (d: string) => { data += d })
    const closed = new Promise((resolve) => socket.once('close', resolve))
    await new Promise((resolve) => socket.once('connect', resolve))
    socket.end(get(path))
    await closed
    t.same(statusLines(data), [200], `${path}: one answer`)
    t.ok(data.endsWith(BODY), `${path}: the whole body, then the cache closed`)
  }
})

t.test('odd, hostile and ordinary request forms are answered exactly as without the front', async (t) => {
  const front = await pair(t)
  const plain = await pair(t, { CACHE_HIT_FRONT: 'false' })
  for (const p of [front, plain]) await sequence(p.cache.url, [get('/page'), get('/big')])
  const cases: Array<[string, string | string[]]> = [
    ['HTTP/1.0', 'GET /page HTTP/1.0\r\nHost: site.test\r\n\r\n'],
    ['a head in two writes', ['GET /page HTTP/1.1\r\nHo', 'st: site.test\r\n\r\n']],
    ['two requests in one write', get('/page') + get('/page')],
    ['a Host carrying a path', 'GET /page HTTP/1.1\r\nHost: site.test/x\r\n\r\n'],
    ['two Host fields', 'GET /page HTTP/1.1\r\nHost: site.test\r\nHost: other.test\r\n\r\n'],
    ['no Host', 'GET /page HTTP/1.1\r\nAccept: */*\r\n\r\n'],
    ['obs-fold', 'GET /page HTTP/1.1\r\nHost: site.test\r\nX-A: a\r\n b\r\n\r\n'],
    ['space before the colon', 'GET /page HTTP/1.1\r\nHost : site.test\r\n\r\n'],
    ['a control byte in the target', 'GET /pa\x01ge HTTP/1.1\r\nHost: site.test\r\n\r\n'],
    ['absolute-form', 'GET http://site.test/page HTTP/1.1\r\nHost: site.test\r\n\r\n'],
    ['a GET with a body', 'GET /page HTTP/1.1\r\nHost: site.test\r\nContent-Length: 5\r\n\r\nhello'],
    ['Transfer-Encoding', 'GET /page HTTP/1.1\r\nHost: site.test\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n'],
    ['Connection: close', 'GET /page HTTP/1.1\r\nHost: site.test\r\nConnection: close\r\n\r\n'],
    ['a reload (Cache-Control: no-cache)', get('/page', 'Cache-Control: no-cache\r\n')],
    ['Pragma: no-cache', get('/page', 'Pragma: no-cache\r\n')],
    ['a Cookie on a page not marked shared', get('/page', 'Cookie: a=1\r\n')],
    ['a matching If-None-Match (304)', get('/page', 'If-None-Match: "v1"\r\n')],
    ['a Range (206)', get('/page', 'Range: bytes=0-9\r\n')],
    ['an unsatisfiable Range (416)', get('/page', 'Range: bytes=99999-\r\n')],
    ['an uncached page', get('/private')],
    ['the health endpoint', get('/-/health')],
    ['PURGE without credentials', 'PURGE /page HTTP/1.1\r\nHost: site.test\r\n\r\n'],
    ['a lower-case method', 'get /page HTTP/1.1\r\nHost: site.test\r\n\r\n'],
    ['a 1 MiB hit', get('/big')],
    ['a complete request, then junk', get('/page') + 'junk\r\n\r\n'],
    // Issue 23, finding 3: nothing after an answer that closes the connection.
    ['no Host, a request behind it', 'GET /p/1 HTTP/1.1\r\nX-Fz: a\r\n\r\n' + get('/page')],
    ['Transfer-Encoding: identity, a request behind it', 'GET /p/1 HTTP/1.1\r\nHost: site.test\r\nTransfer-Encoding: identity\r\n\r\n' + get('/page')],
    ['an Expect node does not know, a request behind it', get('/page', 'Expect: x-unknown\r\n') + get('/page')],
    ['a body declared too large, a request behind it', 'POST /form HTTP/1.1\r\nHost: site.test\r\nContent-Length: 2000000\r\n\r\nabc' + get('/page')],
    ['Connection: close, a request behind it', get('/page', 'Connection: close\r\n') + get('/page')],
    ['a refused request with a body, junk behind it', 'GET /page HTTP/1.1\r\nHost: site.test\r\nHost: other.test\r\nContent-Length: 3\r\n\r\nabcjunk\r\n\r\n'],
    ['no Host with a body, junk behind it', 'GET /page HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcjunk\r\n\r\n'],
    // Issue 23, finding 4: request targets.
    ['a fragment in the target', get('/page#section')],
    ['absolute-form with an empty host', 'GET http:///page HTTP/1.1\r\nHost: site.test\r\n\r\n'],
    ['a reload that accepts any staleness', get('/page', 'Cache-Control: max-stale\r\n')]
  ]
  const summary = (raw: string) => {
    const out: string[] = []
    for (const m of raw.matchAll(/HTTP\/1\.1 (\d{3})[^\r]*\r\n([\s\S]*?)\r\n\r\n/g)) {
      const f = (name: string) => new RegExp(`\\r\\n${name}: ([^\\r]*)`, 'i').exec('\r\n' + m[2])?.[1] ?? '-'
      out.push(`${m[1]} x-cache=${f('x-cache')} length=${f('content-length')} range=${f('content-range')} connection=${f('connection').toLowerCase()}`)
    }
    return out
  }
  /** Collects until the connection closes, or 600 ms pass without a byte once something arrived (5 s at most: a loaded machine is slow). */
  const settled = (socket: net.Socket, read: () => string): Promise<string> => new Promise((resolve) => {
    let quiet: NodeJS.Timeout | undefined
    const done = () => { clearTimeout(quiet); clearTimeout(cap); socket.destroy(); resolve(read()) }
    const cap = setTimeout(done, 5000)
    socket.on('data', () => { clearTimeout(quiet); quiet = setTimeout(done, 600) })
    socket.on('close', done)
  })
  const exchange = async (url: string, text: string | string[]) => {
    if (typeof text === 'string') {
      const socket = net.connect(Number(new URL(url).port), '127.0.0.1', () => socket.write(text))
      socket.setEncoding('latin1')
      let data = ''
      socket.on('data', (d: string) => { data += d })
      socket.on('error', () => {})
      return await settled(socket, () => data)
    }
    const socket = net.connect(Number(new URL(url).port), '127.0.0.1')
    socket.setEncoding('latin1')
    let data = ''
    socket.on('data', (d: string) => { data += d })
    socket.on('error', () => {})
    await new Promise((resolve) => socket.once('connect', resolve))
    for (const part of text) { socket.write(part); await new Promise((resolve) => setTimeout(resolve, 50)) }
    await new Promise((resolve) => setTimeout(resolve, 400))
    socket.destroy()
    return data
  }
  for (const [name, text] of cases) {
    const [a, b] = (await Promise.all([exchange(front.cache.url, text), exchange(plain.cache.url, text)])).map(summary)
    t.ok(a.length > 0, `${name}: answered`)
    t.same(a, b, `${name}: ${b.join(' | ')}`)
  }
  t.equal(front.origin.count(), plain.origin.count(), 'the origin saw as many requests behind either cache')
})

t.test('a client that does not read: the front stops reading from it, and resumes', async (t) => {
  const { cache } = await pair(t)
  await sequence(cache.url, [get('/big')])
  const counters = cache.app.engine.metrics.counters
  const before = counters.hits
  const socket = net.connect(Number(new URL(cache.url).port), '127.0.0.1')
  await new Promise((resolve) => socket.once('connect', resolve))
  socket.pause()
  // One request per write, spaced so that each arrives as its own read.
  const N = 60
  for (let i = 0; i < N; i++) {
    socket.write(get('/big'))
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
  await new Promise((resolve) => setTimeout(resolve, 200))
  const whileStuck = counters.hits - before
  t.ok(whileStuck < 20, `answers written while the client read nothing: ${whileStuck} of ${N} (1 MiB each)`)
  let bytes = 0
  const all = N * (1024 * 1024)
  await new Promise<void>((resolve) => {
    socket.on('data', (d: Buffer) => { bytes += d.length; if (bytes >= all) resolve() })
    socket.resume()
  })
  socket.destroy()
  t.ok(bytes >= all, `every answer arrived once the client read (${N} × 1 MiB)`)
})

t.test('timeouts and closing: an idle connection is closed; close() ends connections still in the front', async (t) => {
  const { cache } = await pair(t, { CACHE_KEEPALIVE_TIMEOUT_MS: '300', CACHE_HEADERS_TIMEOUT_MS: '300' })
  const silent = await rawExchangeFor(cache.url, '', 3000)
  t.ok(silent.closed, 'a connection that never sends a request is closed after the head timeout')
  const idle = await rawExchangeFor(cache.url, get('/page'), 3000)
  t.same(statusLines(idle.data), [200])
  t.ok(idle.closed, 'a connection idle after its answer is closed after the keep-alive timeout')

  const other = await pair(t)
  await sequence(other.cache.url, [get('/page')])
  const socket = net.connect(Number(new URL(other.cache.url).port), '127.0.0.1')
  socket.setEncoding('latin1')
  let data = ''
  socket.on('data', (d: string) => { data += d })
  const ended = new Promise((resolve) => socket.once('end', resolve))
  await new Promise((resolve) => socket.once('connect', resolve))
  socket.write(get('/page'))
  while (!data.includes(BODY)) await new Promise((resolve) => setTimeout(resolve, 10))
  const started = Date.now()
  await other.cache.close()
  await ended
  t.ok(Date.now() - started < 1500, 'the idle front connection was ended at once, not after the grace')
  socket.destroy()
})

t.test('parseFrontHead: only the narrow form', async (t) => {
  const p = (head: string) => parseFrontHead(head, 10, 100)
  t.same(p('GET /a?b=1 HTTP/1.1\r\nHost: x\r\nAccept:  text/html \r\n\r\n'), { method: 'GET', url: '/a?b=1', headers: { host: 'x', accept: 'text/html' } })
  t.same(p('HEAD / HTTP/1.1\r\nHOST: x\r\n\r\n')?.headers, { host: 'x' }, 'names lower-cased')
  t.same(p('GET / HTTP/1.1\r\nHost: x\r\nConnection: Keep-Alive\r\n\r\n')?.headers.connection, 'Keep-Alive')
  for (const head of [
    'POST / HTTP/1.1\r\nHost: x\r\n\r\n',
    'get / HTTP/1.1\r\nHost: x\r\n\r\n',
    'GET / HTTP/1.0\r\nHost: x\r\n\r\n',
    'GET  / HTTP/1.1\r\nHost: x\r\n\r\n',
    'GET * HTTP/1.1\r\nHost: x\r\n\r\n',
    'GET http://x/ HTTP/1.1\r\nHost: x\r\n\r\n',
    'GET /\x7f HTTP/1.1\r\nHost: x\r\n\r\n',
    `GET /${'a'.repeat(100)} HTTP/1.1\r\nHost: x\r\n\r\n`,
    'GET / HTTP/1.1\r\n\r\n',
    'GET / HTTP/1.1\r\nHost: x\r\nHost: x\r\n\r\n',
    'GET / HTTP/1.1\r\nHost: x\r\nhost: y\r\n\r\n',
    'GET / HTTP/1.1\r\nHost : x\r\n\r\n',
    'GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n',
    'GET / HTTP/1.1\r\nHost: x\r\nX: a\x00b\r\n\r\n',
    'GET / HTTP/1.1\r\nHost: x\r\nX: caf\xe9\r\n\r\n',
    'GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n',
    'GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n',
    'GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n',
    'GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, x-a\r\n\r\n',
    'GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n',
    'GET / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n',
    'GET / HTTP/1.1\r\nHost: x\r\nnoColon\r\n\r\n',
    'GET / HTTP/1.1\r\nHost: x\r\n' + Array.from({ length: 10 }, (_, i) => `X-${i}: 1\r\n`).join('') + '\r\n'
  ]) t.equal(p(head), null, JSON.stringify(head))
})
