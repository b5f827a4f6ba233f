/**
 * The frontend rides through a failover (issue 21): its read pool is a real
 * streaming standby, its primary pool and the backend go through a router.
 * The primary is killed with SIGKILL and its synchronous standby promoted
 * (a new timeline); later the read pool moves to a fresh standby of the new
 * primary, as when the old node rejoins. Authors who wrote before, during
 * and after the failover land on their write; pages keep coming from the
 * render cache while the read pool is away; health says failing-over
 * without a 503.
 */
import t from 'tap'
import { MemoryBus } from '../../common/bus.js'
import { parseLsn } from '../../frontend/read-your-writes.js'
import { privatePostgresUnavailable, startPrivateStandby } from '../helpers/private-postgres.js'
import { startFailoverPair, sql, until } from '../helpers/failover-pair.js'
import { startTcpProxy } from '../helpers/tcp-proxy.js'
import { formPost, startBackend, startFrontend } from './helpers.js'

const unavailable = privatePostgresUnavailable()

t.test('authors land on their writes across a promotion; pages and health ride through', { skip: unavailable, timeout: 180_000 }, async (t) => {
  const pair = await startFailoverPair(t, { news: 2, tutorials: 2 })
  const { standby } = pair
  // The read pool: the standby, behind a router of its own (HAProxy's replica listener).
  const readRouter = await startTcpProxy(standby.port)
  t.teardown(readRouter.close)
  const [article, other] = (await sql<{ slug: string }>(pair.primary.url('flashcrowd'), 'select slug from news order by id')).map((r) => r.slug)

  const bus = new MemoryBus()
  const backend = await startBackend(t, pair.url, bus, { BACKEND_DB_RETRY_MS: '30000', DATABASE_CONNECT_TIMEOUT_MS: '1000', BACKEND_MAX_EVENT_LOOP_DELAY_MS: '0' })
  const { app } = await startFrontend(t, pair.url, {
    readUrl: readRouter.url(standby.url('flashcrowd')),
    backendUrls: [backend.url],
    bus,
    env: { FRONTEND_BACKEND_TIMEOUT_MS: '40000', FRONTEND_RYW_WAIT_MS: '3000', DATABASE_CONNECT_TIMEOUT_MS: '1000' }
  })
  const page = `/news/${article}`
  const health = async () => { const res = await app.inject({ url: '/-/health' }); return { code: res.statusCode, ...res.json() as { status: string, database: string } } }
  t.match(await health(), { code: 200, database: 'up' })
  await app.inject({ url: `/news/${other}` })
  t.equal((await app.inject({ url: `/news/${other}` })).headers['x-render-cache'], 'hit', 'a page in the render cache')

  /** Posts a comment and follows the 303: whether the author's landing page shows it, and how it was read. */
  const author = async (text: string) => {
    const posted = await app.inject(formPost(`${page}/comments`, { author: 'Failover', body: text }))
    t.equal(posted.statusCode, 303, `${text}: acknowledged`)
    const location = String(posted.headers.location).split('#')[0]
    return { location, lsn: parseLsn(new URL(location, 'http://x').searchParams.get('rev')), ...await land(location, text) }
  }
  const land = async (location: string, text: string) => {
    const res = await app.inject({ url: location })
    return { landed: res.statusCode === 200 && res.body.includes(text), view: String(res.headers['x-read-your-writes']) }
  }

  const before = await author('written before the failover')
  t.ok(before.landed, `the author before the failover lands on their write (${before.view})`)

  // The failover. A post sent while nobody leads is held by the backend and lands on the new primary.
  let during: Promise<Awaited<ReturnType<typeof author>>> | undefined
  await pair.failover(async () => {
    during = author('written during the failover')
    t.equal((await app.inject({ url: `/news/${other}` })).statusCode, 200, 'pages keep coming while the primary is gone')
    await new Promise((resolve) => setTimeout(resolve, 300))
  })
  const held = await during!
  t.ok(held.landed, `the author whose post was held through the failover lands on it (${held.view})`)
  const after = await author('written after the failover')
  t.ok(after.landed, `the author after the failover lands on their write (${after.view})`)
  t.ok(before.lsn !== undefined && held.lsn !== undefined && after.lsn !== undefined && before.lsn < held.lsn && held.lsn <= after.lsn,
    'commit positions keep growing across the new timeline')
  t.ok((await land(before.location, 'written before the failover')).landed, 'the first author still lands on their write after the promotion')

  // The read pool moves to a fresh standby of the new primary (as the old node rejoins).
  const rejoined = await startPrivateStandby(standby)
  t.teardown(rejoined.remove)
  readRouter.retarget(rejoined.port)
  const late = await author('written once the read pool is a replica again')
  t.ok(late.landed, `the author writing once a replica serves reads again lands on their write (${late.view})`)
  for (const [location, text] of [[before.location, 'written before the failover'], [held.location, 'written during the failover'], [after.location, 'written after the failover']]) {
    t.ok((await land(location, text)).landed, `“${text}”: its author still lands on it with the new replica`)
  }

  // The read pool goes away: health says so without a 503, cached pages keep coming.
  await readRouter.cut()
  t.match(await health(), { code: 200, status: 'degraded', database: 'failing-over' }, 'health: failing over, still in the load balancer')
  t.equal((await app.inject({ url: `/news/${other}` })).statusCode, 200, 'a cached page is still served')
  await readRouter.restore()
  await until('the read pool answers again', async () => (await health()).database === 'up')
  t.pass('health is up again by itself')

  const stored = await sql<{ body: string, n: number }>(pair.leaderUrl(), "select body, count(*)::int as n from comments where author = 'Failover' group by body order by body")
  t.same(stored.map((r) => r.n), [1, 1, 1, 1], 'each post stored once')
})
