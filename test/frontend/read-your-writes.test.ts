/**
 * Read-your-writes with a lagging read pool: the frontend reads a "replica"
 * (a second database, copied from the primary only when the test says so)
 * and learns its replay position from an injected probe.
 */
import t from 'tap'
import { sql } from 'kysely'
import { MemoryBus } from '../../common/bus.js'
import { createTestDatabase, databaseKinds, openDatabase } from '../helpers/database.js'
import { PRIMARY, ReadYourWrites, formatLsn, hasReplayed, parseLsn, type ReplayPosition } from '../../frontend/read-your-writes.js'
import { eventually, formPost, startBackend, startFrontend } from './helpers.js'

t.test('LSN parsing and comparison', async (t) => {
  t.equal(parseLsn('0/0'), 0n)
  t.equal(parseLsn('16/B374D848'), (0x16n << 32n) | 0xB374D848n)
  t.equal(formatLsn(parseLsn('16/B374D848')!), '16/B374D848')
  for (const bad of ['', '0', '1/2/3', 'G/1', '123456789/0', ' 0/1', undefined, 5]) t.equal(parseLsn(bad), undefined, `rejects ${String(bad)}`)
  t.ok(parseLsn('1/0')! > parseLsn('0/FFFFFFFF')!)
  t.ok(hasReplayed(PRIMARY, 10n))
  t.notOk(hasReplayed(5n, 10n))
})

t.test('waitFor is bounded and polls the probe; pending keys clear once replayed', async (t) => {
  let clock = 0
  let position: ReplayPosition = 100n
  let probes = 0
  const ryw = new ReadYourWrites({
    probe: async () => { probes++; return position },
    maxWaitMs: 1000,
    pollMs: 100,
    now: () => clock,
    sleep: async (ms) => { clock += ms; if (clock >= 300) position = 500n }
  })
  t.equal(await ryw.waitFor(50n), true, 'already replayed')
  t.equal(await ryw.waitFor(400n), true, 'replayed after a few polls')
  t.equal(clock, 300)
  t.ok(probes >= 3)
  clock = 0
  t.equal(await ryw.waitFor(900n), false, 'gives up at the deadline')
  t.equal(clock, 1000)

  const before = ryw.snapshot()
  ryw.noteWrite(['news:1'], formatLsn(800n))
  t.notOk(ryw.cacheable(before, ['news:1', 'site']), 'a page showing a key whose write is not replayed is not shareable')
  t.ok(ryw.cacheable(before, ['news:2']), 'other pages are')
  position = 800n
  await ryw.idle()
  t.equal(ryw.pendingKeys, 0, 'the background poll cleared the key')
  t.ok(ryw.cacheable(ryw.snapshot(), ['news:1']))
  t.throws(() => new ReadYourWrites({ probe: async () => 0n, maxWaitMs: -1 }), /maxWaitMs must be an integer >= 0/)
})

t.test('a crowd of waiting authors shares one probe query at a time', async (t) => {
  let probes = 0
  let inFlight = 0
  let maxInFlight = 0
  let release: () => void = () => {}
  const ryw = new ReadYourWrites({
    probe: async () => {
      probes++; inFlight++; maxInFlight = Math.max(maxInFlight, inFlight)
      await new Promise<void>((resolve) => { release = resolve })
      inFlight--
      return 1000n
    },
    maxWaitMs: 1000,
    pollMs: 10
  })
  const waiters = Array.from({ length: 100 }, () => ryw.waitFor(500n))
  await new Promise((resolve) => setImmediate(resolve))
  release()
  t.same(await Promise.all(waiters), Array(100).fill(true), 'every author is answered')
  t.equal(probes, 1, '100 waiters, one query')
  t.equal(maxInFlight, 1)
})

t.test('pending keys expire: a replica that never catches up cannot disable caching forever', async (t) => {
  let clock = 0
  const ryw = new ReadYourWrites({ probe: async () => 0n, maxWaitMs: 0, pendingTtlMs: 5000, now: () => clock, sleep: async (ms) => { clock += ms } })
  ryw.noteWrite(['news:1'], '0/10')
  t.notOk(ryw.cacheable(ryw.snapshot(), ['news:1']))
  clock = 6000
  t.ok(ryw.cacheable(ryw.snapshot(), ['news:1']))
  await ryw.idle()
})

for (const kind of databaseKinds()) {
  t.test(`lagging replica: the author sees the write, the crowd's caches are not re-filled with the old page [${kind}]`, async (t) => {
    const [primary, replica] = await Promise.all([createTestDatabase(kind), createTestDatabase(kind)])
    t.teardown(async () => { await Promise.all([primary.close(), replica.close()]) })
    const p = openDatabase(t, primary)
    const r = openDatabase(t, replica)
    const lsnOf = async () => (await sql<{ l: string }>`select pg_current_wal_lsn()::text as l`.execute(p.db)).rows[0].l
    let replayed: ReplayPosition = parseLsn(await lsnOf())!
    /** "Replication": copies the comments the replica lacks and advances its replay position. */
    const replicate = async () => {
      const have = (await r.db.selectFrom('comments').select(r.db.fn.max('id').as('m')).executeTakeFirstOrThrow()).m ?? '0'
      const rows = await p.db.selectFrom('comments').selectAll().where('id', '>', String(have)).execute()
      if (rows.length) await r.db.insertInto('comments').values(rows).execute()
      replayed = parseLsn(await lsnOf())!
    }
    const bus = new MemoryBus()
    const backend = await startBackend(t, primary.url, bus)
    const { app } = await startFrontend(t, primary.url, { readUrl: replica.url, backendUrls: [backend.url], bus, replayProbe: async () => replayed, env: { FRONTEND_RYW_WAIT_MS: '3000' } })
    const article = await p.db.selectFrom('news').select(['id', 'slug']).orderBy('published_at', 'desc').executeTakeFirstOrThrow()
    const url = `/news/${article.slug}`
    await app.inject({ url })
    t.equal((await app.inject({ url })).headers['x-render-cache'], 'hit')

    // The author: the replica catches up 300 ms after the 303; the page waits for it.
    const keyEvent = new Promise<string | undefined>((resolve) => { const off = bus.subscribe((m) => { if (m.event.kind === 'keys') { off(); resolve(m.event.lsn) } }) })
    const posted = await app.inject(formPost(`${url}/comments`, { author: 'Radia P.', body: 'Written to the primary' }))
    t.equal(posted.statusCode, 303)
    const location = String(posted.headers.location).split('#')[0]
    const eventLsn = await keyEvent
    t.ok(parseLsn(eventLsn), 'the key event carries the commit position')

    // The crowd, before the replica replayed it: the purge dropped the cached page; the page
    // rendered now (from the lagging replica) must not be stored anywhere.
    const stale = await app.inject({ url })
    t.notOk(stale.body.includes('Written to the primary'), 'the replica does not have it yet')
    t.equal(stale.headers['cache-control'], 'no-store', 'not shareable while the replica lags')
    t.equal((await app.inject({ url })).headers['x-render-cache'], 'miss', 'and not kept in the render cache')

    const timer = setTimeout(() => { void replicate() }, 300)
    t.teardown(() => clearTimeout(timer))
    const started = Date.now()
    const own = await app.inject({ url: location })
    t.equal(own.headers['x-read-your-writes'], 'replayed')
    t.ok(Date.now() - started >= 250, 'waited for the replica')
    t.ok(own.body.includes('Written to the primary'), 'the author sees their comment')
    t.equal(own.headers['cache-control'], 'private, no-store')

    // Once replayed, the shared page shows it and is cacheable again.
    await eventually(async () => {
      const res = await app.inject({ url })
      return res.body.includes('Written to the primary') && String(res.headers['cache-control']).startsWith('public')
    })
    t.equal((await app.inject({ url })).headers['x-render-cache'], 'hit')
  })
}

t.test('the author\'s wait is bounded when the replica never catches up', async (t) => {
  const db = await createTestDatabase('embedded')
  t.teardown(db.close)
  const { app } = await startFrontend(t, db.url, { replayProbe: async () => 0n, env: { FRONTEND_RYW_WAIT_MS: '150' } })
  const article = await openDatabase(t, db).db.selectFrom('news').select('slug').executeTakeFirstOrThrow()
  const res = await app.inject({ url: `/news/${article.slug}?rev=FF/0` })
  t.equal(res.statusCode, 200, 'still a page')
  t.equal(res.headers['x-read-your-writes'], 'timeout')
  t.equal(res.headers['cache-control'], 'private, no-store')
  await app.inject({ url: `/news/${article.slug}` }) // now in the render cache
  const junk = await app.inject({ url: `/news/${article.slug}?rev=<script>` })
  t.equal(junk.statusCode, 200)
  t.equal(junk.headers['cache-control'], 'private, no-store', 'any rev is private: it cannot bust or fill shared caches')
  t.notOk(junk.headers['x-read-your-writes'])
  t.equal(junk.headers['x-render-cache'], 'hit', 'a malformed rev cannot force a render')
})
