/**
 * Issue 11, finding 3: a purge undone by a frontend's render cache. A cache
 * node applies a purge and refetches; the frontend it reaches has not applied
 * the same bus event yet and answered its pre-write copy as public, which the
 * cache then kept for minutes. Now the cache names the newest event it applied
 * (X-Invalidated-After) and the frontend answers only once it has applied it
 * too — or, when it cannot catch up in time, with a page no shared cache keeps.
 *
 * A real cache node (cache/app.ts) in front of a real frontend on port 0; the
 * frontend's bus delivery is held back by the test, as a slow subscriber's is.
 */
import t from 'tap'
import type * as Tap from 'tap'
import type { AddressInfo } from 'node:net'
import { MemoryBus, type Bus, type BusHandler, type BusMessage, type SubscribeOptions } from '../../common/bus.js'
import { createTestDatabase, openDatabase } from '../helpers/database.js'
import { startCache, send, closeAgent } from '../cache/fixtures.js'
import { eventually, startFrontend } from './helpers.js'

t.teardown(closeAgent)

/** A subscriber's view of `inner` whose delivery the test can hold back and release. */
class HeldBus implements Bus {
  readonly name = 'held'
  readonly #inner: Bus
  #holding = false
  readonly #held: Array<() => void> = []
  constructor (inner: Bus) { this.#inner = inner }
  hold (): void { this.#holding = true }
  release (): void {
    this.#holding = false
    for (const deliver of this.#held.splice(0)) deliver()
  }

  publish (event: BusMessage['event']): Promise<string> { return this.#inner.publish(event) }
  subscribe (handler: BusHandler, options?: SubscribeOptions): () => void {
    return this.#inner.subscribe((m) => {
      if (this.#holding) this.#held.push(() => handler(m))
      else handler(m)
    }, options)
  }

  async close (): Promise<void> {}
}

const FEW = { tutorials: 2, news: 3, comments: 6, events: 0, completions: 0 }
/** The embedded server shares this process's event loop (see read-your-writes.test.ts). */
const IN_PROCESS_SERVER = { DATABASE_CONNECT_TIMEOUT_MS: '20000' }

// One database for the file: each test writes its own comments, on its own frontend and cache node.
const database = await createTestDatabase('embedded', { seed: FEW })
t.teardown(database.close)

async function setup (t: Tap.Test, env: Record<string, string> = {}) {
  const rw = openDatabase(t, database)
  const bus = new MemoryBus()
  const held = new HeldBus(bus)
  const fe = await startFrontend(t, database.url, { bus: held, env: { ...IN_PROCESS_SERVER, ...env } })
  await fe.app.listen({ host: '127.0.0.1', port: 0 })
  const frontendUrl = `http://127.0.0.1:${(fe.app.server.address() as AddressInfo).port}`
  const cache = await startCache(frontendUrl, {}, { bus })
  t.teardown(cache.close)
  const article = await rw.db.selectFrom('news').select(['id', 'slug']).orderBy('published_at', 'desc').executeTakeFirstOrThrow()
  const url = `${cache.url}/news/${article.slug}`
  /** A write behind everybody's back, and its key event as the backend's outbox publishes it. */
  const write = async (body: string) => {
    await rw.db.insertInto('comments').values({ news_id: article.id, author: 'Bus Tester', body }).execute()
    await bus.publish({ kind: 'keys', keys: [`news:${article.id}`] })
    // The node's clock is the test's: fetches that start at the purge's own instant count as in flight during it.
    cache.clock.advance(1)
  }
  return { fe, cache, held, url, write, rw }
}

t.test('a refetch after a purge waits until this frontend applied the same event', async (t) => {
  const { fe, held, url, write } = await setup(t)
  await send(url)
  const cached = await send(url)
  t.equal(cached.headers['x-cache'], 'HIT', 'the page is cached at the node and in the frontend\'s render cache')

  held.hold() // the frontend's bus is slow
  await write('shown after the purge')
  const answer = send(url) // the node purged it: a miss, refetched from the frontend
  await eventually(() => fe.app.pages.busWaits > 0, 10_000)
  t.notOk(fe.app.renderCache.getLocal(new URL(url).pathname) === undefined, 'the frontend still holds its pre-write copy')
  held.release()
  const res = await answer
  t.equal(res.headers['x-cache'], 'MISS')
  t.ok(res.body.includes('shown after the purge'), 'not the frontend\'s pre-write copy')
  t.not(res.headers['x-render-cache'], 'hit')
  const again = await send(url)
  t.equal(again.headers['x-cache'], 'HIT', 'stored')
  t.ok(again.body.includes('shown after the purge'), 'and what is stored shows the write')
})

t.test('a frontend that cannot catch up in time answers fresh and for nobody\'s cache', async (t) => {
  const { fe, held, url, write } = await setup(t, { FRONTEND_BUS_WAIT_MS: '100' })
  await send(url)
  held.hold()
  await write('the bus is stuck')
  const res = await send(url)
  t.equal(res.headers['cache-control'], 'no-store', 'no shared cache may keep it')
  t.equal(res.headers['x-render-cache'], 'bypass', 'rendered fresh, the render cache not consulted')
  t.ok(res.body.includes('the bus is stuck'))
  t.equal((await send(url)).headers['x-cache'], 'MISS', 'the node did not store it')
  t.ok(fe.app.renderCache.getLocal(new URL(url).pathname), 'the frontend\'s old copy is still there: it has not applied the purge')

  held.release()
  await eventually(async () => (await send(url)).headers['x-cache'] === 'HIT', 10_000)
  const stored = await send(url)
  t.ok(stored.body.includes('the bus is stuck'), 'once caught up, the page is cached again, with the write')
})

t.test('X-Invalidated-After is believed only from trusted proxies', async (t) => {
  const { fe, url } = await setup(t, { FRONTEND_BUS_WAIT_MS: '50' })
  const path = new URL(url).pathname
  await fe.app.inject({ url: path })
  const far = '99999999999999-0'
  const stranger = await fe.app.inject({ url: path, remoteAddress: '203.0.113.9', headers: { 'x-invalidated-after': far } })
  t.equal(stranger.headers['x-render-cache'], 'hit', 'from anyone else the field changes nothing')
  t.match(String(stranger.headers['cache-control']), /^public/)
  t.equal(fe.app.pages.busWaits, 0)
  const proxy = await fe.app.inject({ url: path, remoteAddress: '127.0.0.1', headers: { 'x-invalidated-after': far } })
  t.equal(proxy.headers['x-render-cache'], 'bypass', 'from the cache layer it is obeyed')
  t.equal(proxy.headers['cache-control'], 'no-store')
  const junk = await fe.app.inject({ url: path, remoteAddress: '127.0.0.1', headers: { 'x-invalidated-after': 'gap-17' } })
  t.equal(junk.headers['x-render-cache'], 'hit', 'a value that is no bus position is ignored')
})
