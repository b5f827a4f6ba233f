/**
 * The backend rides through a failover (issue 21): under a steady stream of
 * comment posts — half with an Idempotency-Key, half without — the database
 * behind it ends the writer's sessions (57P01), turns read-only (25006),
 * drops off the network and comes back (class 08 / resets), and finally its
 * primary is killed with SIGKILL and a synchronous streaming standby is
 * promoted, the router (a TCP proxy) switching to it as HAProxy does.
 *
 * Invariants: every post is answered 201 (the retry budget outlasts each
 * fault), no acknowledged write is lost, none is stored twice, every
 * invalidation reaches the bus, commit positions keep growing across the new
 * timeline; with a budget shorter than the outage: 503 + Retry-After and
 * nothing half-written. Real servers only: a private PostgreSQL pair.
 */
import t from 'tap'
import { startBackend } from '../helpers/backend.js'
import { privatePostgresUnavailable } from '../helpers/private-postgres.js'
import { startFailoverPair, sql, until } from '../helpers/failover-pair.js'
import { parseLsn } from '../../frontend/read-your-writes.js'
import { scraper } from '../helpers/metrics.js'

interface Answer { body: string, keyed: boolean, status: number, retryAfter: string | null, lsn: bigint | undefined, id?: string, at: number }

const unavailable = privatePostgresUnavailable()

t.test('writes ride through session kills, a read-only primary, a network cut and a promotion', { skip: unavailable, timeout: 180_000 }, async (t) => {
  const pair = await startFailoverPair(t, {})
  const { primary, standby, router } = pair
  const slug = (await sql<{ slug: string }>(primary.url('flashcrowd'), 'select slug from news limit 1'))[0].slug
  const be = await startBackend(t, pair.url, {
    BACKEND_DB_RETRY_MS: '30000', DATABASE_CONNECT_TIMEOUT_MS: '1000', BACKEND_MAX_EVENT_LOOP_DELAY_MS: '0', BACKEND_WRITE_CONCURRENCY: '2'
  })

  // The posters: closed loop, each post a distinct text; every other one carries a key.
  const answers: Answer[] = []
  let running = true
  let n = 0
  const poster = async () => {
    while (running) {
      const i = n++
      const body = `failover write ${i}`
      const keyed = i % 2 === 0
      const res = await be.post('/v1/comments', { news: slug, author: 'Failover', body }, keyed ? { 'idempotency-key': `fo-${i}` } : {})
      answers.push({ body, keyed, status: res.status, retryAfter: res.headers.get('retry-after'), lsn: parseLsn(res.headers.get('x-commit-lsn')), id: res.json?.id, at: Date.now() })
      await new Promise((resolve) => setTimeout(resolve, 10))
    }
  }
  const posters = Array.from({ length: 8 }, () => poster())
  const acked = () => answers.filter((a) => a.status === 201).length
  /** Writes the backend ran again after a failover error (its metric). */
  const retries = async () => Number(/^flashcrowd_write_failover_retries_total(?:\{[^}]*\})? (\d+)/m.exec(await (await fetch(`${be.url}/-/metrics`, { headers: scraper })).text())?.[1] ?? 0)
  const retried: Record<string, number> = {}
  let lastRetries = 0
  const phase = async (name: string) => { const now = await retries(); retried[name] = now - lastRetries; lastRetries = now }
  const moreAcks = async (what: string, count = 20) => { const from = acked(); await until(what, async () => acked() >= from + count) }
  await moreAcks('writes flow')
  // A load balancer's health checks, from the start: the backend has seen its database up.
  const checks = setInterval(() => { fetch(`${be.url}/-/health`).then((r) => r.body?.cancel(), () => {}) }, 250)
  t.teardown(() => clearInterval(checks))
  t.match(await (await fetch(`${be.url}/-/health`)).json(), { status: 'ok', database: 'up' })

  // 57P01: the writer's sessions are ended by the server (as at a restart or pg_terminate_backend).
  // At least three times, and until one of them met a write in flight (bounded): a session
  // between two batches is idle, and ending an idle one leaves nothing to run again.
  const before57P01 = await retries()
  for (let k = 0; k < 40 && (k < 3 || await retries() === before57P01); k++) {
    await sql(primary.url(), "select pg_terminate_backend(pid) from pg_stat_activity where datname = 'flashcrowd' and pid <> pg_backend_pid()")
    await new Promise((resolve) => setTimeout(resolve, 150))
  }
  await moreAcks('writes after the sessions were ended')
  await phase('57P01')

  // 25006: the server turns read-only under the open sessions (a primary being demoted).
  await sql(primary.url(), 'alter system set default_transaction_read_only = on')
  await sql(primary.url(), 'select pg_reload_conf()')
  await new Promise((resolve) => setTimeout(resolve, 400))
  const readOnlyHealth = await fetch(`${be.url}/-/health`)
  t.match({ status: readOnlyHealth.status, body: await readOnlyHealth.json() }, { status: 200, body: { database: 'failing-over' } }, 'a read-only primary is reported as failing over, and the backend stays in its load balancer')
  await new Promise((resolve) => setTimeout(resolve, 400))
  await sql(primary.url(), 'alter system reset default_transaction_read_only')
  await sql(primary.url(), 'select pg_reload_conf()')
  await moreAcks('writes after the read-only spell')
  await phase('25006')

  // Class 08 / resets: the network to the database is cut for a second.
  await router.cut()
  await new Promise((resolve) => setTimeout(resolve, 1000))
  await router.restore()
  await moreAcks('writes after the network cut')
  await phase('cut')

  // The failover: kill -9 of the primary, the synchronous standby promoted, the router switched.
  const beforeKill = answers.length
  let killedAt = 0
  await pair.failover(async () => {
    killedAt = Date.now()
    const killedHealth = await fetch(`${be.url}/-/health`)
    t.match({ status: killedHealth.status, body: await killedHealth.json() }, { status: 200, body: { status: 'degraded', database: 'failing-over' } }, 'health says the database is failing over, without a 503')
  })
  // The router now reaches the promoted standby: how soon do held writes land there?
  const switchedAt = Date.now()
  await moreAcks('writes on the new primary')
  const firstAfter = answers.find((a, i) => i >= beforeKill && a.status === 201 && a.at > switchedAt)
  await phase('promotion')
  running = false
  await Promise.all(posters)

  const statuses = answers.reduce<Record<string, number>>((acc, a) => { acc[a.status] = (acc[a.status] ?? 0) + 1; return acc }, {})
  t.comment(`${answers.length} posts: ${JSON.stringify(statuses)}; first write acknowledged ${firstAfter ? firstAfter.at - switchedAt : '?'} ms after the router reached the new primary (${switchedAt - killedAt} ms after the kill)`)
  t.comment(`writes run again, by fault: ${JSON.stringify(retried)}`)
  t.ok(Object.values(retried).every((r) => r > 0), 'each fault met writes in flight, and the writer ran them again')
  t.same(answers.filter((a) => a.status !== 201).map((a) => `${a.body}: ${a.status}`), [], 'every post is acknowledged: each fault ended within the retry budget')

  const url = standby.url('flashcrowd')
  const stored = await sql<{ body: string, id: string, n: number }>(url, "select body, min(id)::text as id, count(*)::int as n from comments where author = 'Failover' group by body")
  const byBody = new Map(stored.map((r) => [r.body, r]))
  const acks = answers.filter((a) => a.status === 201)
  t.same(acks.filter((a) => byBody.get(a.body)?.id !== a.id).map((a) => a.body), [], `all ${acks.length} acknowledged writes are on the new primary, under the id they were answered with`)
  t.same(stored.filter((r) => r.n > 1).map((r) => r.body), [], 'no write is stored twice')
  t.equal((await sql<{ n: number }>(url, 'select count(*)::int as n from idempotency_keys where status = 0'))[0].n, 0, 'no claimed key without its answer')

  // Commit positions grow across the promotion (read-your-writes compares them).
  const before = acks.filter((a) => a.at <= killedAt && a.lsn !== undefined).map((a) => a.lsn!)
  t.ok(before.length > 0 && firstAfter?.lsn !== undefined && before.every((p) => p < firstAfter.lsn!), 'the first commit position on the new timeline is past every one acknowledged before the kill')

  // A keyed retry after the failover replays the first answer.
  const keyed = acks.find((a) => a.keyed)!
  const replay = await be.post('/v1/comments', { news: slug, author: 'Failover', body: keyed.body }, { 'idempotency-key': `fo-${Number(keyed.body.split(' ').pop())}` })
  t.equal(replay.status, 201)
  t.equal(replay.json.id, keyed.id, 'a client retry after the failover gets the first answer')
  t.equal(replay.headers.get('idempotent-replayed'), 'true')

  // Every invalidation of an acknowledged write reaches the bus: nothing is left in the outbox.
  await until('the outbox is drained on the new primary', async () => (await sql<{ n: number }>(url, 'select count(*)::int as n from outbox where published_at is null'))[0].n === 0, 20_000)
  t.pass('the outbox publisher resumed on the new primary and published everything')
  const health = await fetch(`${be.url}/-/health`)
  t.equal(health.status, 200, 'the backend is healthy again')

  // With a budget shorter than the outage: 503 + Retry-After, nothing half-written.
  const short = await startBackend(t, router.url(standby.url('flashcrowd')), { BACKEND_DB_RETRY_MS: '600', DATABASE_CONNECT_TIMEOUT_MS: '300', BACKEND_RETRY_AFTER_S: '3' })
  await router.cut()
  const started = Date.now()
  const refused = await short.post('/v1/comments', { news: slug, author: 'Failover', body: 'beyond the budget' })
  t.equal(refused.status, 503, 'beyond BACKEND_DB_RETRY_MS the client gets 503')
  t.equal(refused.headers.get('retry-after'), '3', 'with Retry-After')
  t.ok(Date.now() - started < 10_000, 'within about the retry budget')
  await router.restore()
  t.equal((await sql<{ n: number }>(url, "select count(*)::int as n from comments where body = 'beyond the budget'"))[0].n, 0, 'nothing was written')
})
