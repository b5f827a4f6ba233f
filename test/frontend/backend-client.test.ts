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

t.test('submission keys', async (t) => {
  const base = { action: 'comment:a', fields: { author: 'A', body: 'B' }, clientIp: '1.2.3.4', now: 1_000_000 }
  t.equal(submissionKey(base), submissionKey({ ...base, fields: { body: 'B', author: 'A' }, now: 1_000_500 }), 'field order and seconds do not matter')
  t.not(submissionKey(base), submissionKey({ ...base, clientIp: '1.2.3.5' }))
  t.not(submissionKey(base), submissionKey({ ...base, action: 'comment:b' }))
  t.not(submissionKey(base), submissionKey({ ...base, now: 1_000_000 + 600_000 }), 'a new 10-minute bucket is a new submission')
  // Regression: a double click across a bucket boundary made two keys (two writes).
  const now = 1_800_000_000_000
  const stamped = { ...base, now: now - 1, stamp: String(now - 30_000) }
  t.equal(submissionKey(stamped), submissionKey({ ...stamped, now: now + 1 }), 'the render stamp, not the clock, dates a stamped form')
  t.not(submissionKey(stamped), submissionKey({ ...stamped, stamp: String(now - 20_000) }), 'another render is another submission')
  t.equal(submissionKey({ ...base, now, stamp: 'yesterday' }), submissionKey({ ...base, now }), 'an implausible stamp falls back to the bucket')
  t.equal(submissionKey({ ...base, now, stamp: String(now + 3_600_000) }), submissionKey({ ...base, now }), 'a stamp from the future too')
})
