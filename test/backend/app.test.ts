import t from 'tap'
import { createTestDatabase } from '../helpers/database.js'
import { startBackend } from '../helpers/backend.js'

t.test('health and metrics', async (t) => {
  const database = await createTestDatabase('embedded')
  t.teardown(database.close)
  const be = await startBackend(t, database.url)
  const health = await fetch(`${be.url}/-/health`)
  t.equal(health.status, 200)
  t.match(await health.json(), { status: 'ok', database: 'up' })
  await be.post('/v1/comments', { news: 'missing', author: 'a', body: 'b' })
  const metrics = await (await fetch(`${be.url}/-/metrics`)).text()
  t.match(metrics, /flashcrowd_http_requests_total\{[^}]*route="\/v1\/comments"[^}]*status="404"[^}]*\} 1/)
  t.match(metrics, /flashcrowd_http_request_duration_seconds_bucket/)
  t.match(metrics, /flashcrowd_database_pool_connections\{[^}]*state="total"/)
  t.match(metrics, /flashcrowd_outbox_backlog/)
})
