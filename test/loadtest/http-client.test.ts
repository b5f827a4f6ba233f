// The raw keep-alive client of the hot loop against real servers: node:http
// answering with Content-Length and chunked bodies, a raw server that reads
// bodies until close or closes after each answer, one that hangs, a port
// nobody listens on, and nginx when it is installed. Counts on the server
// side are compared with what the recorder counted, response by response.
import t, { type Test } from 'tap'
import { spawn, spawnSync } from 'node:child_process'
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { createServer as createHttpServer, type Server } from 'node:http'
import { createServer as createNetServer, type AddressInfo, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { freePort } from '../../common/free-port.js'
import { ArrivalClock } from '../../loadtest/arrivals.js'
import { runConnections } from '../../loadtest/http-client.js'
import { Recorder, epochNow } from '../../loadtest/recorder.js'
import { RequestGenerator } from '../../loadtest/requests.js'
import { BUILTIN_SCENARIOS, validateScenario } from '../../loadtest/scenarios.js'
import { Group } from '../../loadtest/group.js'

const listen = async (server: Server | ReturnType<typeof createNetServer>): Promise<number> => {
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  return (server.address() as AddressInfo).port
}

/** Everything the recorder counted, per endpoint and in all. */
function totals (recorder: Recorder, startAt: number): { all: Group, byEndpoint: Map<string, Group> } {
  const all = new Group()
  const byEndpoint = new Map<string, Group>()
  for (const r of recorder.flush(Math.ceil((epochNow() - startAt) / 1000) + 1, true)) {
    for (const c of r.cells) {
      all.addData(c.data)
      let g = byEndpoint.get(c.endpoint)
      if (!g) byEndpoint.set(c.endpoint, (g = new Group()))
      g.addData(c.data)
    }
  }
  return { all, byEndpoint }
}

const browse = (url: string, pages: string[]): RequestGenerator =>
  new RequestGenerator({ scenario: BUILTIN_SCENARIOS.browse, pages, base: url, seed: 7 })

t.test('node:http: Content-Length and chunked answers, cache headers, every response counted once', async (t: Test) => {
  const served = new Map<string, number>()
  let sockets = 0
  const server = createHttpServer((req, res) => {
    served.set(req.url!, (served.get(req.url!) ?? 0) + 1)
    if (req.url === '/news') {
      // no length: node sends it chunked, in three chunks
      res.writeHead(200, { 'content-type': 'text/html', 'x-cache': 'MISS', 'cache-status': 'fc; fwd=miss; collapsed' })
      res.write('a'.repeat(3000))
      res.write('b')
      setImmediate(() => res.end('c'.repeat(70_000)))
    } else if (req.url === '/events') {
      res.writeHead(404, { 'content-length': 9 }).end('not found')
    } else {
      res.writeHead(200, { 'content-length': 5, 'x-cache': 'HIT', 'cache-status': 'fc; hit; ttl=9' }).end('hello')
    }
  })
  server.on('connection', () => { sockets++ })
  const port = await listen(server)
  t.teardown(() => new Promise<void>(resolve => { server.closeAllConnections(); server.close(() => resolve()) }))
  const url = `http://127.0.0.1:${port}/`
  const startAt = epochNow()
  const recorder = new Recorder(startAt)
  await runConnections({ url, connections: 4, duration: 1.5, timeout: 5, source: browse(url, ['/', '/news', '/events']), recorder })
  const { all, byEndpoint } = totals(recorder, startAt)
  const n = [...served.values()].reduce((a, b) => a + b, 0)
  t.equal(sockets, 4, 'four keep-alive connections, none replaced')
  t.ok(all.requests > 50, `${all.requests} responses`)
  t.ok(n - all.requests >= 0 && n - all.requests <= 4, `served ${n}, counted ${all.requests}: at most one in flight per connection dropped at the end`)
  t.equal(all.transportErrors, 0)
  const home = byEndpoint.get('/')!
  const news = byEndpoint.get('/news')!
  const events = byEndpoint.get('/events')!
  t.same([home.status, home.cache.hit, home.cache.miss], [{ 200: home.requests }, home.requests, 0], 'Content-Length answers: 200, HIT')
  t.same([news.status, news.cache.miss, news.cache.collapsed], [{ 200: news.requests }, news.requests, news.requests], 'chunked answers: 200, MISS, collapsed')
  t.same([events.status, events.errors, events.cache.none], [{ 404: events.requests }, events.requests, events.requests])
  t.ok(news.bytes > news.requests * 73_001, 'a chunked answer counts its bytes on the wire (head, chunk sizes, body)')
  t.ok(home.hist.totalCount === home.requests && home.hist.minNonZeroValue > 0, 'one latency per response')
})

t.test('a raw server: bodies until close, Connection: close, HTTP/1.0 — answers complete, connections replaced without errors', async (t: Test) => {
  let accepted = 0
  let requests = 0
  const server = createNetServer((sock: Socket) => {
    accepted++
    let buf = ''
    sock.on('data', (d) => {
      buf += d.toString('latin1')
      let i: number
      while ((i = buf.indexOf('\r\n\r\n')) >= 0) {
        const path = buf.slice(buf.indexOf(' ') + 1, buf.indexOf(' HTTP/'))
        buf = buf.slice(i + 4)
        requests++
        if (path === '/') sock.end('HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the server closes')
        else if (path === '/news') sock.end('HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok')
        else sock.end('HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nold')
      }
    })
    sock.on('error', () => {})
  })
  const port = await listen(server)
  t.teardown(() => new Promise<void>(resolve => server.close(() => resolve())))
  const url = `http://127.0.0.1:${port}/`
  const startAt = epochNow()
  const recorder = new Recorder(startAt)
  await runConnections({ url, connections: 2, duration: 1, timeout: 5, source: browse(url, ['/', '/news', '/events']), recorder })
  const { all, byEndpoint } = totals(recorder, startAt)
  t.equal(all.transportErrors, 0, 'a close that ends an answer is no error')
  t.ok(all.requests > 10, `${all.requests} answers`)
  t.ok(requests - all.requests >= 0 && requests - all.requests <= 2)
  t.ok(accepted >= all.requests, `a new connection for each answer (${accepted} for ${all.requests})`)
  const home = byEndpoint.get('/')!
  t.equal(home.bytes, home.requests * 'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the server closes'.length, 'the body read until close, whole')
})

t.test('a request that hangs times out, is counted against its endpoint, and its connection is replaced', async (t: Test) => {
  let sockets = 0
  const server = createHttpServer((req, res) => {
    if (req.url === '/news') return // never answers
    res.writeHead(200, { 'content-length': 2 }).end('ok')
  })
  server.on('connection', () => { sockets++ })
  const port = await listen(server)
  t.teardown(() => new Promise<void>(resolve => { server.closeAllConnections(); server.close(() => resolve()) }))
  const url = `http://127.0.0.1:${port}/`
  const startAt = epochNow()
  const recorder = new Recorder(startAt)
  await runConnections({ url, connections: 2, duration: 2.5, timeout: 1, source: browse(url, ['/', '/news']), recorder })
  const { byEndpoint } = totals(recorder, startAt)
  const news = byEndpoint.get('/news')!
  t.ok(news.timeouts >= 2 && news.timeouts <= 6, `/news timed out ${news.timeouts} times in 2.5 s at 1 s each, over 2 connections`)
  t.equal(news.requests, 0)
  t.equal(byEndpoint.get('/')!.transportErrors, 0, 'no other endpoint is blamed')
  t.ok(sockets >= 2 + news.timeouts, 'each timeout replaced its connection')
})

t.test('a port nobody listens on: connection errors counted, the instance still ends on time', async (t: Test) => {
  const port = await freePort()
  const url = `http://127.0.0.1:${port}/`
  const startAt = epochNow()
  const recorder = new Recorder(startAt)
  const t0 = Date.now()
  await runConnections({ url, connections: 2, duration: 0.3, timeout: 5, source: browse(url, ['/']), recorder })
  t.ok(Date.now() - t0 < 2000, 'ends after its duration')
  const { all } = totals(recorder, startAt)
  t.equal(all.requests, 0)
  t.ok(all.transportErrors > 0 && all.timeouts === 0, `${all.transportErrors} refused connections`)
})

t.test('open model: arrivals on the clock, connections opened up to the cap, waiting ones sent late and timed from their intended time', async (t: Test) => {
  let sockets = 0
  let served = 0
  // every answer takes 100 ms: 50 req/s need 5 connections, the cap is 2
  const server = createHttpServer((_req, res) => { served++; setTimeout(() => res.writeHead(200, { 'content-length': 2 }).end('ok'), 100) })
  server.on('connection', () => { sockets++ })
  const port = await listen(server)
  t.teardown(() => new Promise<void>(resolve => { server.closeAllConnections(); server.close(() => resolve()) }))
  const url = `http://127.0.0.1:${port}/`
  const startAt = epochNow() + 100
  const recorder = new Recorder(startAt)
  const clock = new ArrivalClock([{ start: 0, duration: 1, rate: 50, maxConnections: 2, stage: 0 }])
  await runConnections({ url, connections: 1, duration: 10, timeout: 5, source: browse(url, ['/']), recorder, arrivals: { clock, startAt } })
  const { all } = totals(recorder, startAt)
  t.equal(served, 50, 'every arrival was sent')
  t.equal(sockets, 2, 'no more connections than the cap')
  const a = all.stats(1).arrivals!
  t.equal(a.intended, 50)
  t.equal(a.sent, 50)
  t.equal(a.dropped, 0)
  t.ok(a.late > 40, `arrivals waiting for a connection left late (${a.late})`)
  t.ok(a.lagged < a.late, 'and not because the clock itself ran late')
  // 2 connections answer 20 req/s: the 50th arrival (at 0.98 s) leaves at about 2.4 s
  t.ok(all.stats(1).latency.max! > 1200, `latencies count from the intended time: max ${all.stats(1).latency.max} ms, not the 100 ms of one answer`)

  // a target that never answers: once the timeout has passed, what waits is dropped
  const hang = createHttpServer(() => {})
  const hangPort = await listen(hang)
  t.teardown(() => new Promise<void>(resolve => { hang.closeAllConnections(); hang.close(() => resolve()) }))
  const hangUrl = `http://127.0.0.1:${hangPort}/`
  const start2 = epochNow() + 50
  const rec2 = new Recorder(start2)
  await runConnections({ url: hangUrl, connections: 1, duration: 10, timeout: 1, source: browse(hangUrl, ['/']), recorder: rec2, arrivals: { clock: new ArrivalClock([{ start: 0, duration: 0.5, rate: 20, maxConnections: 1, stage: 0 }]), startAt: start2 } })
  const hung = totals(rec2, start2).all.stats(1)
  t.equal(hung.arrivals!.intended, 10)
  t.ok(hung.timeouts >= 1 && hung.arrivals!.dropped >= 5, `timed out ${hung.timeouts}, dropped ${hung.arrivals!.dropped}`)
  t.equal(hung.timeouts + hung.arrivals!.dropped, 10, 'each arrival timed out or was dropped')
})

t.test('an abort signal stops every connection at once', async (t: Test) => {
  const server = createHttpServer((_req, res) => { res.writeHead(200, { 'content-length': 2 }).end('ok') })
  const port = await listen(server)
  t.teardown(() => new Promise<void>(resolve => { server.closeAllConnections(); server.close(() => resolve()) }))
  const url = `http://127.0.0.1:${port}/`
  const ac = new AbortController()
  setTimeout(() => ac.abort(), 200)
  const t0 = Date.now()
  await runConnections({ url, connections: 2, duration: 30, timeout: 5, source: browse(url, ['/']), recorder: new Recorder(epochNow()), signal: ac.signal })
  t.ok(Date.now() - t0 < 3000)
})

const haveNginx = spawnSync('sh', ['-c', 'command -v nginx'], { stdio: 'ignore' }).status === 0

t.test('nginx: a static page and a gzip-chunked answer, the counts match its access log', { skip: haveNginx ? false : 'nginx is not installed' }, async (t: Test) => {
  const dir = mkdtempSync(join(tmpdir(), 'flashcrowd-http-client-'))
  chmodSync(dir, 0o755)
  mkdirSync(join(dir, 'www'))
  mkdirSync(join(dir, 'logs'))
  writeFileSync(join(dir, 'www', 'index.html'), '<p>static</p>\n'.repeat(200))
  writeFileSync(join(dir, 'www', 'news'), 'news '.repeat(2000))
  const port = await freePort()
  writeFileSync(join(dir, 'nginx.conf'), `daemon off;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/logs/error.log;
events { worker_connections 256; }
http {
  access_log ${dir}/logs/access.log;
  client_body_temp_path ${dir}/logs; proxy_temp_path ${dir}/logs; fastcgi_temp_path ${dir}/logs; uwsgi_temp_path ${dir}/logs; scgi_temp_path ${dir}/logs;
  keepalive_requests 50;
  gzip on; gzip_min_length 100; gzip_types *;
  server { listen 127.0.0.1:${port}; root ${dir}/www; add_header X-Cache HIT; }
}
`)
  const nginx = spawn('nginx', ['-c', join(dir, 'nginx.conf'), '-p', dir, '-e', join(dir, 'logs', 'error.log')], { stdio: 'ignore' })
  t.teardown(async () => {
    if (nginx.exitCode === null && nginx.pid !== undefined) {
      const gone = new Promise(resolve => nginx.once('exit', resolve))
      process.kill(nginx.pid, 'SIGTERM')
      await gone
    }
    rmSync(dir, { recursive: true, force: true })
  })
  const url = `http://127.0.0.1:${port}/`
  const deadline = Date.now() + 20_000
  for (;;) {
    try {
      await (await fetch(url)).arrayBuffer()
      break
    } catch {
      if (Date.now() > deadline) throw new Error('nginx did not start')
      await new Promise(resolve => setTimeout(resolve, 100))
    }
  }
  const scenario = validateScenario({ name: 'two', stages: [{ name: 's', duration: '100%', to: '100%' }], mix: [{ action: 'page', path: '/', weight: 1 }, { action: 'page', path: '/news', weight: 1 }] }, 'two')
  const startAt = epochNow()
  const recorder = new Recorder(startAt)
  // keepalive_requests 50: nginx closes each connection after its 50th answer (Connection: close)
  await runConnections({ url, connections: 3, duration: 1.5, timeout: 5, source: new RequestGenerator({ scenario, pages: ['/'], base: url, seed: 1 }), recorder })
  const { all, byEndpoint } = totals(recorder, startAt)
  const { readFileSync } = await import('node:fs')
  const logged = readFileSync(join(dir, 'logs', 'access.log'), 'utf8').split('\n').filter(l => l.includes('flashcrowd-loadtest'))
  t.ok(all.requests > 150, `${all.requests} answers, over connections nginx closed every 50`)
  t.ok(logged.length - all.requests >= 0 && logged.length - all.requests <= 3, `nginx logged ${logged.length}, counted ${all.requests}`)
  t.equal(all.transportErrors, 0, 'a Connection: close after the 50th answer is no error')
  t.same(all.status, { 200: all.requests })
  t.equal(all.cache.hit, all.requests, 'X-Cache read on every answer')
  const news = byEndpoint.get('/news')!
  t.ok(news.bytes / news.requests < 1000, `the gzip answer (chunked) is framed by its chunks: ${Math.round(news.bytes / news.requests)} bytes each`)
})

const haveOpenssl = spawnSync('sh', ['-c', 'command -v openssl'], { stdio: 'ignore' }).status === 0

t.test('https: a self-signed staging certificate, Content-Length and chunked answers', { skip: haveOpenssl ? false : 'openssl is not installed' }, async (t: Test) => {
  const dir = mkdtempSync(join(tmpdir(), 'flashcrowd-http-client-tls-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const made = spawnSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'), '-days', '1', '-subj', '/CN=localhost'], { stdio: 'ignore' })
  t.equal(made.status, 0, 'a throwaway certificate')
  const { readFileSync } = await import('node:fs')
  const { createServer: createHttpsServer } = await import('node:https')
  let served = 0
  const server = createHttpsServer({ key: readFileSync(join(dir, 'key.pem')), cert: readFileSync(join(dir, 'cert.pem')) }, (req, res) => {
    served++
    if (req.url === '/news') { res.write('chunk'); res.end('ed') } else res.writeHead(200, { 'content-length': 5 }).end('hello')
  })
  const port = await listen(server as unknown as Server)
  t.teardown(() => new Promise<void>(resolve => { server.closeAllConnections(); server.close(() => resolve()) }))
  const url = `https://localhost:${port}/`
  const startAt = epochNow()
  const recorder = new Recorder(startAt)
  await runConnections({ url, connections: 2, duration: 1, timeout: 5, source: browse(url, ['/', '/news']), recorder })
  const { all, byEndpoint } = totals(recorder, startAt)
  t.ok(all.requests > 20, `${all.requests} answers over TLS`)
  t.ok(served - all.requests >= 0 && served - all.requests <= 2)
  t.equal(all.transportErrors, 0)
  t.ok(byEndpoint.get('/news')!.requests > 0 && byEndpoint.get('/')!.requests > 0, 'both framings')
})
