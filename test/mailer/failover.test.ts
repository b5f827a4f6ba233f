/**
 * The mailer rides through a failover (issue 21): event sign-ups keep coming
 * through a backend while the primary is killed with SIGKILL and its
 * synchronous standby promoted. The mailer, pointed at the same router,
 * resumes by itself: every acknowledged sign-up's confirmation arrives once,
 * whether it was queued before, during or after the failover; its health
 * says failing-over without a 503 meanwhile.
 */
import t from 'tap'
import { startBackend } from '../helpers/backend.js'
import { privatePostgresUnavailable } from '../helpers/private-postgres.js'
import { startFailoverPair, sql, until } from '../helpers/failover-pair.js'
import { startMailer, startSmtp } from './helpers.js'

const unavailable = privatePostgresUnavailable()

t.test('every acknowledged sign-up is mailed once across a promotion', { skip: unavailable, timeout: 180_000 }, async (t) => {
  const pair = await startFailoverPair(t, {})
  const be = await startBackend(t, pair.url, { BACKEND_DB_RETRY_MS: '30000', DATABASE_CONNECT_TIMEOUT_MS: '1000', BACKEND_MAX_EVENT_LOOP_DELAY_MS: '0' })
  const smtp = await startSmtp(t)
  const mailer = await startMailer(t, pair.url, smtp.url, { MAILER_POLL_MS: '50', DATABASE_CONNECT_TIMEOUT_MS: '1000' }, { autoStart: true })
  const health = async () => { const res = await mailer.app.inject('/-/health'); return { code: res.statusCode, ...res.json() as { status: string, database: string } } }
  t.match(await health(), { code: 200, database: 'up' })

  const eventDate = new Date(Date.now() + 30 * 86_400_000).toISOString().slice(0, 10)
  const acked: string[] = []
  let n = 0
  let running = true
  const signUps = async () => {
    while (running) {
      const email = `organizer${n++}@school.example`
      const res = await be.post('/v1/events', { organizer: 'Ada', email, school: 'School', country: 'DE', city: 'Berlin', expectedParticipants: 20, eventDate })
      if (res.status === 201) acked.push(email)
      else { t.fail(`a sign-up was answered ${res.status}: ${JSON.stringify(res.json)}`); running = false }
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
  }
  const writers = [signUps(), signUps()]
  await until('sign-ups are mailed', async () => smtp.accepted.length >= 10)

  await pair.failover(async () => {
    await new Promise((resolve) => setTimeout(resolve, 300))
    t.match(await health(), { code: 200, status: 'degraded', database: 'failing-over' }, 'the mailer says the database is failing over, without a 503')
  })
  const ackedAtFailover = acked.length
  await until('sign-ups after the failover', async () => acked.length >= ackedAtFailover + 10)
  running = false
  await Promise.all(writers)

  await until('every acknowledged sign-up is mailed', async () => acked.every((email) => smtp.accepted.some((m) => m.to.includes(email))), 60_000)
  const received = new Map<string, number>()
  for (const m of smtp.accepted) for (const to of m.to) received.set(to, (received.get(to) ?? 0) + 1)
  t.same(acked.filter((email) => received.get(email) !== 1), [], `each of ${acked.length} acknowledged sign-ups got its confirmation once`)
  t.same(await sql(pair.leaderUrl(), "select status, count(*)::int as n from mail_messages where status <> 'sent' group by status"), [], 'nothing left queued or sending on the new primary')
  t.match(await health(), { code: 200, database: 'up' }, 'the mailer is healthy again by itself')
})
