/**
 * Outages do not flood the log (backend/app.ts with common/log-aggregate.ts):
 * with the bus down every commit's publish fails, with the database down every
 * write is a 503, and each is one line in full, then at most one line per
 * 10 s with a count.
 */
import t from 'tap'
import { pino } from 'pino'
import { createTestDatabase } from '../helpers/database.js'
import { eventually, startBackend } from '../helpers/backend.js'
import { freePort } from '../../common/free-port.js'
import { MemoryBus, type BusEvent } from '../../common/bus.js'

class DownBus extends MemoryBus {
  attempts = 0
  override async publish (_event: BusEvent): Promise<string> {
    this.attempts++
    throw new Error('bus unavailable')
  }
}

function recordingLogger () {
  const lines: Array<{ level: number, msg: string, err?: { stack?: string } }> = []
  const logger = pino({ level: 'info' }, { write: (line: string) => { lines.push(JSON.parse(line)) } })
  return { logger, lines }
}

t.test('the bus down: one line, not one per write', async (t) => {
  const database = await createTestDatabase(process.env.DATABASE_URL ? 'postgres' : 'embedded')
  t.teardown(database.close)
  const bus = new DownBus()
  const { logger, lines } = recordingLogger()
  const be = await startBackend(t, database.url, {}, { bus, logger })
  const article = await be.database.db.selectFrom('news').select(['slug']).orderBy('id').executeTakeFirstOrThrow()
  const statuses = new Set<number>()
  for (let round = 0; round < 10; round++) {
    const answers = await Promise.all(Array.from({ length: 10 }, (_, i) => be.post('/v1/comments', { news: article.slug, author: 'Flood', body: `write ${round}-${i}` })))
    for (const a of answers) statuses.add(a.status)
  }
  t.same([...statuses], [201], 'every write is acknowledged')
  // Commits wake the publisher at most every 20 ms (passes coalesce), and the poll retries
  // after a failed pass: wait for the attempts rather than count them per commit.
  t.ok(await eventually(() => bus.attempts >= 10, 30_000), `the publisher kept trying (${bus.attempts} attempts)`)
  const about = lines.filter((l) => l.msg.startsWith('outbox publish failing'))
  t.ok(about.length >= 1 && about.length <= 2, `${about.length} line(s) for ${bus.attempts} failures`)
  t.match(about[0].err?.stack, /bus unavailable/, 'the first with its error')
})

t.test('the database down: one error line with a stack, not one per 503', async (t) => {
  const { logger, lines } = recordingLogger()
  // No write retries: the aggregation of the 503s' log lines is what is looked at here.
  const be = await startBackend(t, `postgres://postgres@127.0.0.1:${await freePort()}/nothing`, { BACKEND_DB_RETRY_MS: '0' }, { logger })
  const statuses = new Set<number>()
  for (let round = 0; round < 10; round++) {
    const answers = await Promise.all(Array.from({ length: 10 }, (_, i) => be.post('/v1/comments', { news: 'any', author: 'Flood', body: `write ${round}-${i}` })))
    for (const a of answers) statuses.add(a.status)
  }
  t.same([...statuses], [503], '100 writes refused with 503')
  const about = lines.filter((l) => l.msg.startsWith('requests failing with 503'))
  t.ok(about.length >= 1 && about.length <= 2, `${about.length} line(s) for 100 503s`)
  t.equal(about[0].level, 50, 'error level')
  t.match(about[0].err?.stack, /ECONNREFUSED|connect/, 'the first with its stack')
  t.notOk(lines.some((l) => l.msg === 'request failed'), 'no line per request')
})
