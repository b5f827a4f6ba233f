/**
 * Issue 11, finding 5: read-your-writes ended where FRONTEND_RYW_WAIT_MS
 * did. Now the author's page comes from the primary when the read pool has
 * not replayed their write in time — through a small read-only pool behind a
 * bounded gate, so a crowd of authors waits (or gets the replica's page)
 * instead of piling onto the primary.
 */
import t from 'tap'
import type * as Tap from 'tap'
import { sql } from 'kysely'
import { MemoryBus } from '../../common/bus.js'
import { createDatabase } from '../../common/db.js'
import { PrimaryReads } from '../../frontend/primary-reads.js'
import { parseLsn } from '../../frontend/read-your-writes.js'
import { createTestDatabase, databaseKinds, openDatabase } from '../helpers/database.js'
import { formPost, startBackend, startFrontend } from './helpers.js'
import { scraper } from '../helpers/metrics.js'

/** A handle that never connects: the gate tests run no query. */
function idleHandle (t: Tap.Test) {
  const handle = createDatabase({ url: 'postgres://postgres@127.0.0.1:9/none', readOnly: true, max: 1 })
  t.teardown(handle.close)
  return handle
}

t.test('the gate admits a few at a time, queues a bounded number for a bounded time', async (t) => {
  const gate = new PrimaryReads({ db: idleHandle(t), maxConcurrent: 2, maxQueue: 1, queueTimeoutMs: 60_000 })
  let running = 0
  let most = 0
  const releases: Array<() => void> = []
  const job = () => gate.read(async () => {
    running++; most = Math.max(most, running)
    await new Promise<void>((resolve) => releases.push(resolve))
    running--
    return 'done'
  })
  const a = job()
  const b = job()
  const c = job() // queued
  t.same(await job(), { ok: false, reason: 'queue-full' }, 'a full queue refuses at once: nothing piles up')
  t.equal(gate.active, 2)
  t.equal(gate.queued, 1)
  releases.shift()!() // a finishes; c takes its slot
  t.same(await a, { ok: true, value: 'done' })
  while (releases.length < 2) await new Promise((resolve) => setImmediate(resolve))
  t.equal(gate.active, 2)
  t.equal(gate.queued, 0)
  releases.splice(0).forEach((r) => r())
  t.same(await Promise.all([b, c]), [{ ok: true, value: 'done' }, { ok: true, value: 'done' }])
  t.equal(most, 2, 'never more than maxConcurrent on the primary')
  t.equal(gate.active, 0)

  const slow = new PrimaryReads({ db: idleHandle(t), maxConcurrent: 1, maxQueue: 5, queueTimeoutMs: 30 })
  let release: () => void = () => {}
  const holder = slow.read(() => new Promise<void>((resolve) => { release = resolve }))
  t.same(await slow.read(async () => 'never'), { ok: false, reason: 'queue-timeout' }, 'a wait in the queue is bounded')
  t.equal(slow.queued, 0, 'and leaves the queue')
  release()
  await holder
  const failing = slow.read(async () => { throw new Error('statement timeout') })
  await t.rejects(failing, /statement timeout/)
  t.equal(slow.active, 0, 'a failed read gives its slot back')
  t.throws(() => new PrimaryReads({ db: createDatabase({ url: 'postgres://x@127.0.0.1:9/y', max: 1 }), maxConcurrent: 1, maxQueue: 0, queueTimeoutMs: 0 }), /read-only/)
})

/** Enough content for an article page. */
const FEW = { tutorials: 2, news: 3, comments: 6, events: 0, completions: 0 }
const IN_PROCESS_SERVER = { DATABASE_CONNECT_TIMEOUT_MS: '20000' }

for (const kind of databaseKinds()) {
  t.test(`an author whose write the replica has not replayed reads it from the primary [${kind}]`, async (t) => {
    const primary = await createTestDatabase(kind, { seed: FEW })
    t.teardown(primary.close)
    // A "replica" that never replays anything after its copy.
    const replica = await createTestDatabase(kind, { seed: false })
    t.teardown(replica.close)
    const p = openDatabase(t, primary)
    const r = openDatabase(t, replica)
    await r.db.insertInto('news').values(await p.db.selectFrom('news').selectAll().execute()).execute()
    await r.db.insertInto('comments').values(await p.db.selectFrom('comments').selectAll().execute()).execute()
    const stuckAt = parseLsn((await sql<{ l: string }>`select pg_current_wal_lsn()::text as l`.execute(p.db)).rows[0].l)!

    const bus = new MemoryBus()
    const backend = await startBackend(t, primary.url, bus, IN_PROCESS_SERVER)
    const fe = await startFrontend(t, primary.url, {
      readUrl: replica.url, backendUrls: [backend.url], bus, replayProbe: async () => stuckAt,
      env: { FRONTEND_RYW_WAIT_MS: '30000', ...IN_PROCESS_SERVER }
    })
    t.ok(fe.primary, 'the frontend opened a primary pool beside its read pool')
    t.ok(fe.primary!.readOnly, 'read-only, like every frontend connection')
    const { app } = fe
    const article = await p.db.selectFrom('news').select(['slug']).orderBy('published_at', 'desc').executeTakeFirstOrThrow()
    const url = `/news/${article.slug}`

    const posted = await app.inject(formPost(`${url}/comments`, { author: 'Grace H.', body: 'Only the primary has this' }))
    t.equal(posted.statusCode, 303)
    const location = String(posted.headers.location).split('#')[0]
    // FRONTEND_RYW_WAIT_MS is long: the author never waits for the replica, whatever it says.
    const started = Date.now()
    const own = await app.inject({ url: location })
    t.ok(Date.now() - started < 20_000, 'the author did not wait for the replica')
    t.equal(own.headers['x-read-your-writes'], 'primary', 'the replica has not replayed it: read from the primary at once')
    t.ok(own.body.includes('Only the primary has this'), 'the author sees their comment')
    t.equal(own.headers['cache-control'], 'private, no-store')
    // Everybody else reads the replica; once the write's invalidation has
    // reached this frontend over the bus (the outbox publisher's own pace), it
    // knows the replica lags behind it and shares nothing it renders from there.
    let crowd = await app.inject({ url })
    for (const deadline = Date.now() + 15_000; crowd.headers['cache-control'] !== 'no-store' && Date.now() < deadline;) {
      t.notOk(crowd.body.includes('Only the primary has this'), 'everybody else still reads the replica')
      await new Promise((resolve) => setTimeout(resolve, 50))
      crowd = await app.inject({ url })
    }
    t.notOk(crowd.body.includes('Only the primary has this'), 'everybody else still reads the replica')
    t.equal(crowd.headers['cache-control'], 'no-store', 'which is not shareable while it lags')

    // A rev beyond every commit this frontend heard of is made up: it buys no primary read
    // (and waits for the replica, bounded: a frontend with a short wait is asked).
    const short = await startFrontend(t, primary.url, { readUrl: replica.url, backendUrls: [backend.url], bus, replayProbe: async () => stuckAt, env: { FRONTEND_RYW_WAIT_MS: '100', ...IN_PROCESS_SERVER } })
    const madeUp = await short.app.inject({ url: `${url}?rev=FFFFFFF/0` })
    t.equal(madeUp.headers['x-read-your-writes'], 'timeout')
    t.notOk(madeUp.body.includes('Only the primary has this'))

    const metrics = (await app.inject({ url: '/-/metrics', headers: scraper })).body
    t.match(metrics, /flashcrowd_frontend_author_views_total\{[^}]*view="primary"[^}]*\} 1/)
    await t.rejects(sql`insert into comments (news_id, author, body) select id, 'x', 'y' from news limit 1`.execute(fe.primary!.db), /read-only/, 'the primary pool cannot write')
  })
}
