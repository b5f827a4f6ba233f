/**
 * Issue 10, finding 8: a client that stops reading a streamed (not stored)
 * answer releases its upstream connection after CACHE_SEND_TIMEOUT_MS, long
 * before the socket's idle timeout.
 */
import t from 'tap'
import net from 'node:net'
import { startOrigin, startCache, closeAgent, send } from './fixtures.js'

t.teardown(closeAgent)

async function until (what: string, check: () => boolean, ms: number): Promise<void> {
  const deadline = Date.now() + ms
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}

t.test('issue 10: a client that stops reading a pass-through answer frees the origin connection', async (t) => {
  const piece = Buffer.alloc(64 * 1024, 97)
  let originClosed = false
  let originSent = 0
  const origin = await startOrigin((_req, res) => {
    res.setHeader('cache-control', 'no-store')
    res.setHeader('content-type', 'application/octet-stream')
    // An endless body, written as fast as the cache takes it.
    const pump = (): void => {
      while (!originClosed) {
        originSent += piece.length
        if (!res.write(piece)) { res.once('drain', pump); return }
      }
    }
    res.on('close', () => { originClosed = true })
    pump()
  })
  // The idle timeout stays at its default (30 s): only the send timeout can end this within the test.
  const cache = await startCache(origin.url, { CACHE_SEND_TIMEOUT_MS: '300' })
  t.teardown(async () => { await cache.close(); await origin.close() })

  const socket = net.connect(Number(new URL(cache.url).port), '127.0.0.1', () => socket.write('GET /stream HTTP/1.1\r\nHost: x\r\n\r\n'))
  let received = 0
  let clientClosed = false
  socket.on('data', (d: Buffer) => {
    received += d.length
    // Read a little, then stop reading altogether.
    if (received > 256 * 1024) socket.pause()
  })
  socket.on('close', () => { clientClosed = true })
  socket.on('error', () => {})
  t.teardown(() => { socket.destroy() })

  await until('the origin connection to close', () => originClosed, 10_000)
  t.ok(originClosed, `the origin saw its response closed after sending ${Math.round(originSent / 1024 / 1024)} MiB`)
  t.ok(received > 256 * 1024, 'the client did get the start of the answer')
  await until('the client connection to be dropped', () => { socket.resume(); return clientClosed }, 5000)
  t.ok(clientClosed, 'the stalled client was dropped')
  const upstream = cache.app.engine.director.upstreams[0]
  t.equal(upstream.inflight, 0)

  // The cache and the origin are fine: the next request is answered (and not stalled by the old one).
  originClosed = false
  const next = await send(cache.url + '/small-after', { method: 'HEAD' })
  t.equal(next.status, 200)
})

t.test('a reader that keeps up is never cut off, however long the answer takes', async (t) => {
  // The origin pauses between pieces for longer than the send timeout: a slow upstream is not a stalled client.
  const origin = await startOrigin((_req, res) => {
    // Storable but larger than CACHE_MAX_OBJECT_BYTES, length unknown: streamed through.
    res.setHeader('cache-control', 'public, max-age=60')
    let n = 0
    const next = (): void => {
      if (n++ === 4) { res.end('end'); return }
      res.write('p'.repeat(4096))
      setTimeout(next, 150)
    }
    next()
  })
  // Objects above 1 KiB are streamed, so this answer goes through the streaming path.
  const cache = await startCache(origin.url, { CACHE_SEND_TIMEOUT_MS: '100', CACHE_MAX_OBJECT_BYTES: '1024' })
  t.teardown(async () => { await cache.close(); await origin.close() })
  const answer = await send(cache.url + '/slow')
  t.equal(answer.body, 'p'.repeat(4 * 4096) + 'end', 'the whole answer arrived')
  t.match(answer.headers['cache-status'], /detail=too-big/, 'it was streamed, not stored')
})
