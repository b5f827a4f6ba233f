/**
 * A bounded sign-up rush through the real write path: 300 sign-ups and 100
 * completions with an address against the backend, two mailers sending at
 * once to a real SMTP server: every message delivered, none twice, and no
 * request waited for SMTP (the server takes no message until every write was
 * answered).
 */
import t from 'tap'
import { pino } from 'pino'
import { eachDatabase, openDatabase } from '../helpers/database.js'
import { startBackend } from '../helpers/backend.js'
import { startMailer, startSmtp, statuses, until } from './helpers.js'

// Both databases, 400 writes and 400 messages each, on a busy 2-core machine.
t.setTimeout(480_000)

eachDatabase(t, 'signup rush', async (t, database) => {
  const handle = openDatabase(t, database)
  const smtp = await startSmtp(t)
  // The SMTP server takes no message at all until every write was answered
  // (then 20 ms each): a request that waited for SMTP would never be answered.
  let open!: () => void
  const gate = new Promise<void>((resolve) => { open = resolve })
  smtp.decide = async () => { await gate; await new Promise((resolve) => setTimeout(resolve, 20)); return undefined }
  // Load shedding (503 when the event loop lags) is not what this test is about: the embedded database runs in this process too.
  // The backend's errors, to be shown if a write is not acknowledged.
  const errors: string[] = []
  const logger = pino({ level: 'error' }, { write: (line: string) => { errors.push(line) } })
  const be = await startBackend(t, database.url, { BACKEND_MAX_EVENT_LOOP_DELAY_MS: '0' }, { logger })
  const env = { MAILER_BATCH_MAX: '50', MAILER_POLL_MS: '50', MAILER_SMTP_POOL_SIZE: '4', MAILER_SMTP_TIMEOUT_MS: '300000', MAILER_RETRY_BASE_MS: '100' }
  await startMailer(t, database.url, smtp.url, env, { autoStart: true })
  await startMailer(t, database.url, smtp.url, env, { autoStart: true })
  const tutorial = (await handle.pool.query('select slug from tutorials order by id limit 1')).rows[0].slug
  const date = new Date(Date.now() + 20 * 86_400_000).toISOString().slice(0, 10)

  const started = Date.now()
  const answers: number[] = []
  let retries = 0
  const writes = Array.from({ length: 400 }, (_, i) => i)
  // 20 at a time, as a crowd of browsers would.
  for (let i = 0; i < writes.length; i += 20) {
    answers.push(...await Promise.all(writes.slice(i, i + 20).map(async (n) => {
      // A 503 (the database busy on a loaded machine) is retried with the same key, as the frontend does: still one write, one message.
      for (let attempt = 0; ; attempt++) {
        const res = n < 300
          ? await be.post('/v1/events', { organizer: `Rush ${n}`, email: `rush${n}@school.example`, school: `Rush School ${n}`, country: 'IN', city: 'Pune', expectedParticipants: 25, eventDate: date }, { 'idempotency-key': `rush-event-${n}-0000` })
          : await be.post('/v1/completions', { tutorial, name: `Pupil ${n}`, country: 'IN', email: `pupil${n}@school.example` }, { 'idempotency-key': `rush-done-${n}-0000` })
        if (res.status !== 503 || attempt === 5) return res.status
        retries++
        await new Promise((resolve) => setTimeout(resolve, 200))
      }
    })))
  }
  const answeredIn = Date.now() - started
  t.same(answers.filter((s) => s !== 201), [], `every write acknowledged (${retries} retried after a 503)${errors.length ? `; backend errors: ${errors.slice(0, 3).join(' ')}` : ''}`)
  t.equal(smtp.accepted.length, 0, `all answered (in ${answeredIn} ms) while the SMTP server held every message`)
  open()

  t.ok(await until(async () => (await statuses(handle)).sent === 400, 180_000), 'all 400 messages sent')
  const counts = smtp.byMessageId()
  t.equal(counts.size, 400, '400 distinct messages')
  t.equal(smtp.accepted.length, 400, 'none twice')
  const recipients = new Set(smtp.accepted.flatMap((m) => m.to))
  t.equal(recipients.size, 400, 'one per address')
  t.ok(recipients.has('rush0@school.example') && recipients.has('pupil399@school.example'))
})
