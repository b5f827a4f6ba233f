/**
 * Issue 11, finding 3 (the cache's side): every fetch for the store names the
 * newest bus event this node applied (X-Invalidated-After), so the frontend
 * can refuse to answer it from anything rendered before that event. The
 * field is the node's own: a client's copy never reaches the origin.
 */
import t from 'tap'
import { admin, closeAgent, page, send, startCache, startOrigin } from './fixtures.js'

t.teardown(closeAgent)

t.test('fetches name the newest applied bus event; clients cannot set it', async (t) => {
  const origin = await startOrigin(page({ 'cache-control': 's-maxage=60', 'surrogate-key': 'news:1' }, (n) => `v${n}`))
  t.teardown(origin.close)
  const cache = await startCache(origin.url)
  t.teardown(cache.close)
  const seen = () => origin.requests.at(-1)!.headers['x-invalidated-after']

  await send(`${cache.url}/a`, { headers: { 'x-invalidated-after': '99999999999999-0' } })
  t.equal(origin.count('/a'), 1)
  t.equal(seen(), undefined, 'before any event: no field, and the client\'s was dropped')

  const first = await cache.bus.publish({ kind: 'keys', keys: ['news:1'] })
  cache.clock.advance(1)
  await send(`${cache.url}/a`, { headers: { 'x-invalidated-after': '1' } })
  t.equal(origin.count('/a'), 2, 'the purge made it a miss')
  t.equal(seen(), first, 'the refetch names the event that purged it, not what the client said')

  const second = await cache.bus.publish({ kind: 'ban', pattern: '^/b' })
  await send(`${cache.url}/c`)
  t.equal(seen(), second, 'any later event moves the position')

  // Passed requests go to one client only; the field is still never the client's.
  await send(`${cache.url}/a`, { method: 'POST', headers: { 'x-invalidated-after': '7', 'content-type': 'text/plain', ...admin }, body: 'x' })
  t.equal(seen(), undefined, 'a pass forwards no position, least of all the client\'s')
})
