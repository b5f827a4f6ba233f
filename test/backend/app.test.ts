import t from 'tap'
import { createTestDatabase } from '../helpers/database.js'
import { startBackend, eventually } from '../helpers/backend.js'
import { MemoryBus, type BusEvent } from '../../common/bus.js'
import { scraper } from '../helpers/metrics.js'

t.test('health and metrics', async (t) => {
  const database = await createTestDatabase('embedded')
  t.teardown(database.close)
  const be = await startBackend(t, database.url)
  const health = await fetch(`${be.url}/-/health`)
  t.equal(health.status, 200)
  t.match(await health.json(), { status: 'ok', database: 'up' })
  await be.post('/v1/comments', { news: 'missing', author: 'a', body: 'b' })
  const metrics = await (await fetch(`${be.url}/-/metrics`, { headers: scraper })).text()
  t.match(metrics, /flashcrowd_http_requests_total\{[^}]*route="\/v1\/comments"[^}]*status="404"[^}]*\} 1/)
  t.match(metrics, /flashcrowd_http_request_duration_seconds_bucket/)
  t.match(metrics, /flashcrowd_database_pool_connections\{[^}]*state="total"/)
  t.match(metrics, /flashcrowd_outbox_backlog/)
})

t.test('issue 25: outbox lag (commit → invalidation) and the primary\'s timeline are scraped', async (t) => {
  const database = await createTestDatabase('embedded')
  t.teardown(database.close)
  /** A bus that refuses to publish while `down`, as Redis does in an outage. */
  class DownBus extends MemoryBus {
    down = true
    override async publish (event: BusEvent): Promise<string> {
      if (this.down) throw new Error('bus unavailable')
      return super.publish(event)
    }
  }
  const bus = new DownBus()
  const be = await startBackend(t, database.url, {}, { bus })
  const gauge = async (name: string) => Number(new RegExp(`^${name}\\{[^}]*\\} (\\S+)$`, 'm').exec(await (await fetch(`${be.url}/-/metrics`, { headers: scraper })).text())?.[1])
  // The first scrape already reads the primary, both gauges from one query.
  const first = await (await fetch(`${be.url}/-/metrics`, { headers: scraper })).text()
  const timeline = Number(/^flashcrowd_database_timeline\{[^}]*\} (\S+)$/m.exec(first)?.[1])
  const started = Number(/^flashcrowd_database_start_time_seconds\{[^}]*\} (\S+)$/m.exec(first)?.[1])
  t.ok(timeline >= 1, `the primary's timeline (${timeline})`)
  t.ok(started > 1e9 && started <= Date.now() / 1000 + 1, `the primary's start time, in Unix seconds (${started})`)
  t.equal(await gauge('flashcrowd_outbox_oldest_unpublished_seconds'), 0, 'nothing waits: 0')
  // An event committed 42 s ago that the bus has not taken yet.
  await be.database.pool.query("insert into outbox (keys, created_at) values ('{news}', now() - interval '42 seconds')")
  const lag = await gauge('flashcrowd_outbox_oldest_unpublished_seconds')
  t.ok(lag >= 42 && lag < 100, `the oldest unpublished event's age (${lag} s)`)
  bus.down = false
  be.app.outbox.kick()
  t.ok(await eventually(async () => await gauge('flashcrowd_outbox_oldest_unpublished_seconds') === 0), 'published: back to 0')
})
