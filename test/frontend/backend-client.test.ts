import t, { type Test } from 'tap'
import { createServer, type Server } from 'node:http'
import { once } from 'node:events'
import { BackendUnavailableError, createBackendClient, submissionKey } from '../../frontend/backend-client.js'

async function origin (t: Test, handler: Parameters<typeof createServer>[1]): Promise<{ url: string, hits: () => number, server: Server }> {
  let hits = 0
  const server = createServer((req, res) => { hits++; handler!(req, res) })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => { server.closeAllConnections(); server.close() })
  return { url: `http://127.0.0.1:${(server.address() as { port: number }).port}`, hits: () => hits, server }
}

const ok = (req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse) => {
  let body = ''
  req.on('data', (c) => { body += c })
  req.on('end', () => res.writeHead(201, { 'content-type': 'application/json' }).end(JSON.stringify({ id: '1', got: JSON.parse(body), key: req.headers['idempotency-key'] ?? null })))
}

t.test('spreads requests over backends round-robin', async (t) => {
  const a = await origin(t, ok)
  const b = await origin(t, ok)
  const client = createBackendClient({ urls: [a.url, b.url], timeoutMs: 1000 })
  t.teardown(() => client.close())
  for (let i = 0; i < 4; i++) await client.post('/v1/comments', { i })
  t.equal(a.hits(), 2)
  t.equal(b.hits(), 2)
})

t.test('retried on another backend only with an idempotency key', async (t) => {
  // The first backend takes the request and dies before answering: the outcome is unknown.
  const broken = await origin(t, (req) => { req.socket.destroy() })
  const good = await origin(t, ok)
  const client = createBackendClient({ urls: [broken.url, good.url], timeoutMs: 1000 })
  t.teardown(() => client.close())
  const res = await client.post('/v1/comments', { a: 1 }, { idempotencyKey: 'fe-abc' })
  t.equal(res.status, 201)
  t.equal(res.origin, good.url)
  t.equal((res.body as { key: string }).key, 'fe-abc', 'the retry carries the same key')
  t.equal(broken.hits(), 1)

  const before = good.hits()
  // Round-robin now starts at the good one; make it start at the broken one again.
  await client.post('/v1/comments', { warm: true }, { idempotencyKey: 'fe-warm' })
  const failure = await client.post('/v1/comments', { a: 2 }).catch((err: unknown) => err)
  t.type(failure, BackendUnavailableError, 'without a key a write of unknown fate is not re-sent')
  t.equal(good.hits(), before + 1, 'the good backend saw only the keyed request')
})

t.test('every backend down: BackendUnavailableError with Retry-After', async (t) => {
  const client = createBackendClient({ urls: ['http://127.0.0.1:9', 'http://127.0.0.1:7'], timeoutMs: 500 })
  t.teardown(() => client.close())
  const err = await client.post('/v1/events', {}, { idempotencyKey: 'k' }).catch((e: unknown) => e) as BackendUnavailableError
  t.type(err, BackendUnavailableError)
  t.equal(err.retryAfter, 10)
  t.throws(() => createBackendClient({ urls: [], timeoutMs: 1 }), /at least one backend/)
  t.throws(() => createBackendClient({ urls: ['ftp://x'], timeoutMs: 1 }), /not an http\(s\) URL/)
  t.throws(() => createBackendClient({ urls: ['http://x'], timeoutMs: 0 }), /timeoutMs must be a positive integer/)
})

t.test('a slow backend times out', async (t) => {
  const slow = await origin(t, () => { /* never answers */ })
  const client = createBackendClient({ urls: [slow.url], timeoutMs: 200 })
  t.teardown(() => client.close())
  t.type(await client.post('/v1/comments', {}, { idempotencyKey: 'k' }).catch((e: unknown) => e), BackendUnavailableError)
})

t.test('submission keys: one per form instance', async (t) => {
  const base = { action: 'comment:a', fields: { author: 'A', body: 'B' }, nonce: 'c2f1a0e4b9d84d6f8a1b2c3d4e5f6a7b' }
  t.match(submissionKey(base), /^fe-[A-Za-z0-9_-]{43}$/)
  t.equal(submissionKey(base), submissionKey({ ...base, fields: { body: 'B', author: 'A' } }), 'field order does not matter: a double click of one form is one key')
  // Issue 11: thirty pupils, one school address, one cached render, the same words.
  t.not(submissionKey(base), submissionKey({ ...base, nonce: 'd3e2b1f5cae95e7091c2d3e4f5a6b7c8' }), 'another form instance is another submission')
  t.not(submissionKey(base), submissionKey({ ...base, action: 'comment:b' }))
  t.not(submissionKey(base), submissionKey({ ...base, fields: { author: 'A', body: 'C' } }), 'the same form with other words is another submission')
})

t.test('one deadline for all attempts: a backend holding a write through a failover uses it up, nobody else is asked', async (t) => {
  // The first backend holds the write (retrying its database) past the deadline.
  const holding = await origin(t, () => {})
  const other = await origin(t, ok)
  const client = createBackendClient({ urls: [holding.url, other.url], timeoutMs: 300 })
  t.teardown(() => client.close())
  await t.rejects(client.post('/v1/comments', { a: 1 }, { idempotencyKey: 'fe-held' }), BackendUnavailableError, 'the visitor gets their form back with 503 + Retry-After')
  t.equal(holding.hits(), 1)
  t.equal(other.hits(), 0, 'no second attempt after the deadline: the visitor\'s wait stays below the cache\'s upstream timeout')
})
