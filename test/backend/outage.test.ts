import t from 'tap'
import { eachDatabase } from '../helpers/database.js'
import { startBackend } from '../helpers/backend.js'
import { startTcpProxy } from '../helpers/tcp-proxy.js'

eachDatabase(t, 'Postgres unreachable: 503 + Retry-After, nothing half-written, recovery', async (t, database) => {
  const port = Number(new URL(database.url).port)
  const proxy = await startTcpProxy(port)
  t.teardown(proxy.close)
  const be = await startBackend(t, proxy.url(database.url), { BACKEND_RETRY_AFTER_S: '7', BACKEND_DB_RETRY_MS: '300', DATABASE_CONNECT_TIMEOUT_MS: '3000' })
  const article = await be.database.db.selectFrom('news').select('slug').orderBy('id').executeTakeFirstOrThrow()
  const body = { news: article.slug, author: 'Outage', body: 'during the outage' }

  t.equal((await fetch(`${be.url}/-/health`)).status, 200)
  await proxy.cut()
  // Within DATABASE_FAILOVER_MS of its last answer the database counts as failing over: the
  // backend stays in its load balancer, saying so (common/database-health.ts).
  const health = await fetch(`${be.url}/-/health`)
  t.equal(health.status, 200)
  t.match(await health.json(), { status: 'degraded', database: 'failing-over' })
  const write = await be.post('/v1/comments', body, { 'idempotency-key': 'outage-1' })
  t.equal(write.status, 503)
  t.equal(write.headers.get('retry-after'), '7')
  t.equal(write.json.error, 'unavailable')
  t.notMatch(JSON.stringify(write.json), /ECONN|127\.0\.0\.1|pg|stack/i, 'no internals')

  await proxy.restore()
  let recovered = false
  for (let i = 0; i < 50 && !recovered; i++) {
    recovered = ((await (await fetch(`${be.url}/-/health`)).json()) as { database?: string }).database === 'up'
    if (!recovered) await new Promise((resolve) => setTimeout(resolve, 100))
  }
  t.ok(recovered, 'health recovers by itself')
  const retry = await be.post('/v1/comments', body, { 'idempotency-key': 'outage-1' })
  t.equal(retry.status, 201, 'the retried write goes through once')
  t.equal(retry.headers.get('idempotent-replayed'), null, 'the failed attempt left nothing behind')
  const rows = await be.database.db.selectFrom('comments').select('id').where('author', '=', 'Outage').execute()
  t.equal(rows.length, 1)
})
