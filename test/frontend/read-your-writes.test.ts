/**
 * Read-your-writes with a lagging read pool: the frontend reads a "replica"
 * (a second database, copied from the primary only when the test says so)
 * and learns its replay position from an injected probe.
 */
import t from 'tap'
import type * as Tap from 'tap'
import { sql } from 'kysely'
import { MemoryBus, type Bus, type BusMessage } from '../../common/bus.js'
import { createTestDatabase, databaseKinds, openDatabase, type DatabaseKind, type TestDatabase } from '../helpers/database.js'
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
  t.equal(ryw.waiting, 0, 'nobody left waiting')

  const ticket = ryw.beginRender()
  ryw.noteWrite(['news:1'], formatLsn(800n))
  t.ok(ryw.pendingFor(['news:1', 'site']), 'a page showing a key whose write is not replayed is not shareable')
  t.notOk(ryw.pendingFor(['news:2']), 'other pages are')
  t.notOk(ryw.endRender(ticket, ['news:1']), 'nor is a render that started before the write replayed')
  position = 800n
  await ryw.idle()
  t.equal(ryw.pendingKeys, 0, 'the background poll cleared the key')
  const after = ryw.beginRender()
  t.ok(ryw.endRender(after, ['news:1']), 'a render that starts after the replay is shareable')
  t.throws(() => new ReadYourWrites({ probe: async () => 0n, maxWaitMs: -1 }), /maxWaitMs must be an integer >= 0/)
})

// Issue 21: after a failover the read pool may reach another server, one that is behind
// (a standby that rejoined on the new timeline): its lower position is the truth, and nothing
// rendered from it is shared until it reaches what this frontend knew was committed.
t.test('a read pool that moves to a server behind (a failover) is believed, and not shared from until it catches up', async (t) => {
  let position: ReplayPosition = 1000n
  const ryw = new ReadYourWrites({ probe: async () => position, maxWaitMs: 0, sleep: async () => {} })
  t.equal(await ryw.probe(), 1000n)
  ryw.noteWrite(['news:1'], formatLsn(900n))
  t.ok(await ryw.replayedNow(900n), 'replayed on the old replica')
  position = 700n // the read pool now reaches a rejoined standby
  t.equal(await ryw.probe(), 700n, 'the lower position replaces the higher one')
  t.notOk(await ryw.replayedNow(900n), 'a write before the failover is not taken as replayed there: its author reads the primary')
  t.notOk(ryw.endRender(ryw.beginRender(), ['news:2']), 'no page rendered from the server behind is shared')
  position = 950n
  await ryw.probe()
  t.notOk(ryw.endRender(ryw.beginRender(), ['news:2']), 'not before it reaches the newest position known before the move')
  position = 1000n
  await ryw.probe()
  t.ok(ryw.endRender(ryw.beginRender(), ['news:2']), 'shared again once it did')
  position = PRIMARY
  await ryw.probe()
  position = 1200n // a replica again after answering as the primary
  ryw.noteWrite(['news:3'], formatLsn(1500n))
  await ryw.probe()
  t.notOk(ryw.endRender(ryw.beginRender(), ['news:2']), 'behind the newest commit heard of: not shared')
  await ryw.close()
})

// Issue 11, finding 4: cacheable() looked at the pending list when the render
// ended; a render that started before the replica replayed a write and ended
// after the mark was cleared was published as shareable without the write.
t.test('a render straddling the replay is judged by the position it started from', async (t) => {
  let position: ReplayPosition = 100n
  const ryw = new ReadYourWrites({ probe: async () => position, maxWaitMs: 0, pollMs: 1 })
  ryw.noteWrite(['news:7'], formatLsn(600n))
  const straddling = ryw.beginRender() // reads the replica at ~100: without the write
  const unrelated = ryw.beginRender()
  position = 700n
  await ryw.idle() // the replica replayed it: the pending mark is settled here
  t.equal(ryw.pendingKeys, 0, 'nothing is pending any more')
  t.notOk(ryw.pendingFor(['news:7']), 'a shared page of news:7 is trusted again')
  const late = ryw.beginRender() // starts after the replay: sees the write
  t.notOk(ryw.endRender(straddling, ['news:7', 'site']), 'the straddling render is not shareable')
  t.ok(ryw.endRender(unrelated, ['news:8']), 'a render of other keys is')
  t.ok(ryw.endRender(late, ['news:7']), 'a render that started after the replay is')
  t.equal(ryw.rendersInFlight, 0)
  const again = ryw.beginRender()
  t.ok(ryw.endRender(again, ['news:7']), 'the mark was dropped once no older render was running')
  // A failed render hands its ticket back and holds nothing.
  ryw.noteWrite(['news:9'], formatLsn(900n))
  const failed = ryw.beginRender()
  ryw.abandonRender(failed)
  position = 950n
  await ryw.idle()
  t.equal(ryw.rendersInFlight, 0)
})

// The backend reads the commit position with a short deadline; under load an
// event can come without one. Its keys must still not be shared from a
// lagging replica: they wait for the position the primary had reached.
t.test('a key event without a commit position stays pending until the replica reaches the primary\'s position', async (t) => {
  let position: ReplayPosition = 100n
  let asked = 0
  const ryw = new ReadYourWrites({ probe: async () => position, maxWaitMs: 0, pollMs: 1, currentCommit: async () => { asked++; return 500n } })
  ryw.noteWrite(['news:1'], undefined)
  t.ok(ryw.pendingFor(['news:1']), 'pending at once, before the primary answered')
  await eventually(() => asked === 1)
  position = 400n
  await eventually(() => ryw.known === 400n)
  t.ok(ryw.pendingFor(['news:1']), 'still pending below the primary\'s position')
  position = 500n
  await ryw.idle()
  t.notOk(ryw.pendingFor(['news:1']), 'replayed once the replica got there')
  const alone = new ReadYourWrites({ probe: async () => 0n, maxWaitMs: 0 })
  alone.noteWrite(['news:1'], undefined)
  t.notOk(alone.pendingFor(['news:1']), 'without a primary to ask (the read pool is the primary) nothing is marked')
})

t.test('close stops the background poll at once, even for a replica that never catches up', async (t) => {
  let probes = 0
  const ryw = new ReadYourWrites({ probe: async () => { probes++; return 0n }, maxWaitMs: 60_000, pendingTtlMs: 3_600_000, pollMs: 5 })
  ryw.noteWrite(['news:1'], '0/10')
  const waiting = ryw.waitFor(10n)
  await eventually(() => probes >= 2)
  await ryw.close()
  t.equal(await waiting, false, 'an author still waiting is answered')
  const after = probes
  await new Promise((resolve) => setImmediate(resolve))
  t.equal(probes, after, 'no probe after close')
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
  t.ok(ryw.pendingFor(['news:1']))
  t.notOk(ryw.endRender(ryw.beginRender(), ['news:1']))
  clock = 6000
  t.notOk(ryw.pendingFor(['news:1']))
  t.ok(ryw.endRender(ryw.beginRender(), ['news:1']))
  await ryw.idle()
})

/** Enough content for an article page; less setup work than the default seed. */
const FEW = { tutorials: 2, news: 3, comments: 6, events: 0, completions: 0 }
/**
 * The embedded server shares this process's event loop: a pool's connect
 * deadline would measure the server's own work, not an unreachable server.
 */
const IN_PROCESS_SERVER = { DATABASE_CONNECT_TIMEOUT_MS: '20000' }

/**
 * The embedded primary, shared by the two tests that need one: each embedded
 * database costs seconds of CPU to create, which is what made this file run
 * past tap's timeout on two busy cores.
 */
let embeddedPrimary: Promise<TestDatabase> | undefined
function primaryDatabase (sub: Tap.Test, kind: DatabaseKind): Promise<TestDatabase> {
  if (kind === 'embedded') {
    // Closed when the whole file is done.
    embeddedPrimary ??= createTestDatabase('embedded', { seed: FEW }).then((db) => { t.teardown(db.close); return db })
    return embeddedPrimary
  }
  return createTestDatabase(kind, { seed: FEW }).then((db) => { sub.teardown(db.close); return db })
}

/** The next bus message matching `match`, or an error after `ms` (never an unbounded wait). */
function nextMessage (bus: Bus, match: (m: BusMessage) => boolean, ms = 10_000): Promise<BusMessage> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { off(); reject(new Error(`no matching bus event within ${ms} ms`)) }, ms)
    const off = bus.subscribe((m) => { if (match(m)) { clearTimeout(timer); off(); resolve(m) } })
  })
}

for (const kind of databaseKinds()) {
  // Every wait here is on a condition with a deadline: the "replica" catches
  // up when the test says so, after the author is seen waiting, not after a
  // timer that CPU contention could make fire too late (the old version's
  // 300 ms timer against a 3 s wait) — and teardown no longer waits out the
  // read-your-writes poll (ReadYourWrites.close).
  t.test(`lagging replica: the author sees the write, the crowd's caches are not re-filled with the old page [${kind}]`, async (t) => {
    // The "replica" is a second database with the primary's articles and comments, copied when the test says so.
    // One after the other, each closed at teardown as soon as it exists: two
    // embedded servers set up at once starve each other's event loop, and a
    // failure in one must not leave the other open (the process would live on
    // until tap's timeout).
    const primary = await primaryDatabase(t, kind)
    const replica = await createTestDatabase(kind, { seed: false })
    t.teardown(replica.close)
    const p = openDatabase(t, primary)
    const r = openDatabase(t, replica)
    await r.db.insertInto('news').values(await p.db.selectFrom('news').selectAll().execute()).execute()
    await r.db.insertInto('comments').values(await p.db.selectFrom('comments').selectAll().execute()).execute()
    const lsnOf = async () => (await sql<{ l: string }>`select pg_current_wal_lsn()::text as l`.execute(p.db)).rows[0].l
    let replayed: ReplayPosition = parseLsn(await lsnOf())!
    let replicated = false
    /** "Replication": copies the comments the replica lacks and advances its replay position. */
    const replicate = async () => {
      const have = (await r.db.selectFrom('comments').select(r.db.fn.max('id').as('m')).executeTakeFirstOrThrow()).m ?? '0'
      const rows = await p.db.selectFrom('comments').selectAll().where('id', '>', String(have)).execute()
      if (rows.length) await r.db.insertInto('comments').values(rows).execute()
      replayed = parseLsn(await lsnOf())!
      replicated = true
    }
    const bus = new MemoryBus()
    const backend = await startBackend(t, primary.url, bus, IN_PROCESS_SERVER)
    // No primary pool (FRONTEND_PRIMARY_POOL_MAX=0): the author waits for the replica, and the
    // wait is long: it ends when the replica catches up, which this test controls.
    const { app } = await startFrontend(t, primary.url, { readUrl: replica.url, backendUrls: [backend.url], bus, replayProbe: async () => replayed, env: { FRONTEND_RYW_WAIT_MS: '30000', FRONTEND_PRIMARY_POOL_MAX: '0', ...IN_PROCESS_SERVER } })
    const article = await p.db.selectFrom('news').select(['id', 'slug']).orderBy('published_at', 'desc').executeTakeFirstOrThrow()
    const url = `/news/${article.slug}`
    await app.inject({ url })
    t.equal((await app.inject({ url })).headers['x-render-cache'], 'hit')

    const keyEvent = nextMessage(bus, (m) => m.event.kind === 'keys')
    const posted = await app.inject(formPost(`${url}/comments`, { author: 'Radia P.', body: 'Written to the primary' }))
    t.equal(posted.statusCode, 303)
    const location = String(posted.headers.location).split('#')[0]
    t.match(location, /\?rev=[0-9A-F]+\/[0-9A-F]+$/, 'the redirect names the commit position')
    const event = (await keyEvent).event
    t.ok(event.kind === 'keys' && parseLsn(event.lsn), 'the key event carries the commit position')

    // The crowd, before the replica replayed it: the purge dropped the cached page; the page
    // rendered now (from the lagging replica) must not be stored anywhere.
    const stale = await app.inject({ url })
    t.notOk(stale.body.includes('Written to the primary'), 'the replica does not have it yet')
    t.equal(stale.headers['cache-control'], 'no-store', 'not shareable while the replica lags')
    t.equal((await app.inject({ url })).headers['x-render-cache'], 'miss', 'and not kept in the render cache')

    // The author (no primary to read): their page waits for the replica; the replica catches up once they are seen waiting.
    let answeredBeforeReplication = false
    const ownAnswer = app.inject({ url: location }).then((res) => { answeredBeforeReplication = !replicated; return res })
    await eventually(() => app.ryw.waiting > 0, 10_000)
    await replicate()
    const own = await ownAnswer
    t.notOk(answeredBeforeReplication, 'the author\'s page waited for the replica')
    t.equal(own.headers['x-read-your-writes'], 'replayed')
    t.ok(own.body.includes('Written to the primary'), 'the author sees their comment')
    t.equal(own.headers['cache-control'], 'private, no-store')

    // Once replayed, the shared page shows it and is cacheable again.
    await eventually(async () => {
      const res = await app.inject({ url })
      return res.body.includes('Written to the primary') && String(res.headers['cache-control']).startsWith('public')
    }, 10_000)
    t.equal((await app.inject({ url })).headers['x-render-cache'], 'hit')
  })
}

t.test('the author\'s wait is bounded when the replica never catches up', async (t) => {
  const db = await primaryDatabase(t, 'embedded')
  const { app } = await startFrontend(t, db.url, { replayProbe: async () => 0n, env: { FRONTEND_RYW_WAIT_MS: '150', ...IN_PROCESS_SERVER } })
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
