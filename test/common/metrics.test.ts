import t from 'tap'
import Fastify from 'fastify'
import pg from 'pg'
import { createMetrics, metricsPlugin, oneReadPerScrape, registerReplicaLagGauge } from '../../common/metrics.js'
import { replicaSkipReason, startStreamingReplica } from '../helpers/replica.js'
import { createTestDatabase } from '../helpers/database.js'
import { METRICS_TOKEN, scraper } from '../helpers/metrics.js'

async function appWith (token: string | undefined) {
  const app = Fastify({ logger: false })
  await app.register(metricsPlugin, { metrics: createMetrics({ role: 'test', defaults: false }), token })
  app.get('/page', async () => 'ok')
  await app.ready()
  return app
}

t.test('issue 25: GET /-/metrics answers the scraper only (every Fastify role registers this plugin)', async (t) => {
  const app = await appWith(METRICS_TOKEN)
  t.teardown(() => app.close())
  await app.inject('/page')
  const visitor = await app.inject('/-/metrics')
  t.equal(visitor.statusCode, 401)
  t.notMatch(visitor.body, /flashcrowd_/, 'no counters for a visitor')
  const wrong = await app.inject({ url: '/-/metrics', headers: { authorization: 'Bearer not-the-metrics-token-000' } })
  t.equal(wrong.statusCode, 403)
  t.notMatch(wrong.body, /flashcrowd_/)
  const ok = await app.inject({ url: '/-/metrics', headers: scraper })
  t.equal(ok.statusCode, 200)
  t.match(ok.body, /flashcrowd_http_requests_total\{method="GET",route="\/page",status="200",role="test"\} 1/)
  t.equal(ok.headers['cache-control'], 'no-store')

  const shut = await appWith(undefined)
  t.teardown(() => shut.close())
  t.equal((await shut.inject({ url: '/-/metrics', headers: scraper })).statusCode, 403, 'no METRICS_TOKEN: refused to everyone')
})

t.test('issue 25: a lagging replica\'s lag, as a frontend\'s scrape reads it from its read pool', { skip: replicaSkipReason() }, async (t) => {
  const replica = await startStreamingReplica(t, { applyDelayMs: 4000 })
  if (typeof replica === 'string') { t.comment(`no replica here: ${replica}`); t.pass('skipped'); return }
  const database = await createTestDatabase('postgres', { seed: false })
  t.teardown(database.close)
  const primary = new pg.Client({ connectionString: database.url })
  await primary.connect()
  t.teardown(() => primary.end())
  const reads = new pg.Pool({ connectionString: replica.urlFor(database.url), max: 1 })
  const metrics = createMetrics({ role: 'frontend', defaults: false })
  registerReplicaLagGauge(metrics, reads)
  const lag = async () => Number(/^flashcrowd_database_replica_lag_seconds\{[^}]*\} (\S+)$/m.exec(await metrics.registry.metrics())?.[1])

  await primary.query('create table lag_probe (n int)')
  await replica.caughtUp()
  t.equal(await lag(), 0, 'caught up: 0')
  // A commit the replica holds back for 4 s: until it replays it, it trails by the time since its last replayed commit.
  await primary.query('insert into lag_probe values (1)')
  let seen = 0
  for (let i = 0; i < 70 && seen === 0; i++) { seen = await lag(); if (seen === 0) await new Promise((resolve) => setTimeout(resolve, 50)) }
  t.ok(seen > 0 && seen < 60, `behind: ${seen} s`)
  await replica.caughtUp()
  t.equal(await lag(), 0, 'replayed: 0 again')
  await reads.end()
  const gone = createMetrics({ role: 'frontend', defaults: false })
  registerReplicaLagGauge(gone, reads)
  t.match(await gone.registry.metrics(), /^flashcrowd_database_replica_lag_seconds\{[^}]*\} -1$/m, 'a read pool that does not answer: -1')
})

t.test('oneReadPerScrape: the gauges of one scrape share a read; the next scrape reads anew', async (t) => {
  let reads = 0
  const read = oneReadPerScrape(async () => ++reads)
  t.same(await Promise.all([read(), read(), read()]), [1, 1, 1], 'collected together: one read')
  await new Promise((resolve) => setTimeout(resolve, 5))
  t.equal(await read(), 2, 'a later scrape: a new read')
  const failing = oneReadPerScrape(async () => { reads++; throw new Error('database away') })
  await t.rejects(Promise.all([failing(), failing()]), /database away/)
  t.equal(reads, 3, 'a failed read is shared too')
})
