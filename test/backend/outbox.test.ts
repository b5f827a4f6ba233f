import t from 'tap'
import { eachDatabase, openDatabase } from '../helpers/database.js'
import { startBackend, eventually } from '../helpers/backend.js'
import { MemoryBus, type BusEvent } from '../../common/bus.js'
import { OutboxPublisher } from '../../backend/outbox.js'
import { startTcpProxy } from '../helpers/tcp-proxy.js'

/** A bus that fails while `down` is set, as Redis does during an outage. */
class FlakyBus extends MemoryBus {
  down = false
  override async publish (event: BusEvent): Promise<string> {
    if (this.down) throw new Error('bus unavailable')
    return super.publish(event)
  }
}

eachDatabase(t, 'transactional outbox', async (t, database) => {
  await t.test('events committed before a crash are published by the next backend', async (t) => {
    const handle = openDatabase(t, database)
    // The state a backend leaves when it dies between commit and publish.
    await handle.db.insertInto('outbox').values({ keys: ['news:1', 'news'] }).execute()
    const be = await startBackend(t, database.url)
    t.ok(await eventually(() => be.messages.some((m) => m.event.kind === 'keys' && m.event.keys.includes('news:1'))), 'published on start')
    t.ok(await eventually(async () => await be.app.outbox.backlog() === 0), 'marked published')
  })

  await t.test('a bus outage delays invalidations, never loses them', async (t) => {
    const bus = new FlakyBus()
    bus.down = true
    const be = await startBackend(t, database.url, {}, { bus })
    const article = await be.database.db.selectFrom('news').select(['id', 'slug']).orderBy('id', 'desc').executeTakeFirstOrThrow()
    const res = await be.post('/v1/comments', { news: article.slug, author: 'Outage', body: 'still acknowledged' })
    t.equal(res.status, 201, 'the write is acknowledged while the bus is down')
    await new Promise((resolve) => setTimeout(resolve, 200))
    t.ok(await be.app.outbox.backlog() >= 1, 'the event waits in the outbox')
    bus.down = false
    t.ok(await eventually(() => be.messages.some((m) => m.event.kind === 'keys' && m.event.keys.includes(`news:${article.id}`))), 'published once the bus is back')
    t.ok(await eventually(async () => await be.app.outbox.backlog() === 0))
  })

  await t.test('a batch becomes one event carrying the commit position', async (t) => {
    const handle = openDatabase(t, database)
    await handle.db.insertInto('outbox').values([{ keys: ['a', 'b'] }, { keys: ['b', 'c'] }]).execute()
    const bus = new MemoryBus()
    const seen: BusEvent[] = []
    bus.subscribe((m) => { seen.push(m.event) })
    const publisher = new OutboxPublisher({ database: handle, bus, pollMs: 10_000 })
    t.equal(await publisher.drainOnce(), 2)
    t.equal(seen.length, 1)
    const event = seen[0]
    t.equal(event.kind, 'keys')
    if (event.kind === 'keys') {
      t.same([...event.keys].sort(), ['a', 'b', 'c'])
      if (database.kind === 'postgres') t.match(event.lsn, /^[0-9A-F]+\/[0-9A-F]+$/)
    }
    t.equal(await publisher.drainOnce(), 0, 'nothing published twice')
  })

  await t.test('shutdown finishes in-flight writes and publishes what they committed', async (t) => {
    // The database hangs while the writes arrive, so they are surely in flight when the close begins.
    const proxy = await startTcpProxy(Number(new URL(database.url).port))
    t.teardown(proxy.close)
    const be = await startBackend(t, proxy.url(database.url), { BACKEND_OUTBOX_POLL_MS: '60000' })
    const article = await be.database.db.selectFrom('news').select(['id', 'slug']).orderBy('id').executeTakeFirstOrThrow()
    proxy.freeze()
    const writes = Array.from({ length: 5 }, (_, i) => be.post('/v1/comments', { news: article.slug, author: 'Closing', body: `in flight ${i}` }))
    await new Promise((resolve) => setTimeout(resolve, 200))
    const closing = be.app.close()
    await new Promise((resolve) => setTimeout(resolve, 100))
    proxy.thaw()
    const answers = await Promise.all(writes)
    await closing
    t.same(answers.map((a) => a.status), [201, 201, 201, 201, 201], 'every in-flight write finished and was acknowledged')
    const check = openDatabase(t, database)
    const stored = await check.db.selectFrom('comments').select('id').where('author', '=', 'Closing').execute()
    t.equal(stored.length, 5)
    t.ok(be.messages.some((m) => m.event.kind === 'keys' && m.event.keys.includes(`news:${article.id}`)), 'their invalidation was published during close')
    const left = await check.db.selectFrom('outbox').select('id').where('published_at', 'is', null).execute()
    t.equal(left.length, 0, 'nothing left in the outbox')
  })
})
