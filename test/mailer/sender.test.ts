/**
 * The sender against a real SMTP server (smtp-server on port 0): one e-mail
 * per message across retries, back-off on 4xx, failure on 5xx, an outage of
 * the server, the quota, several mailers at once.
 */
import t from 'tap'
import { simpleParser } from 'mailparser'
import type pg from 'pg'
import { eachDatabase, openDatabase } from '../helpers/database.js'
import { startTcpProxy } from '../helpers/tcp-proxy.js'
import { headerOf, queueEvents, startMailer, startSmtp, statuses, testClock, until } from './helpers.js'
import { scraper } from '../helpers/metrics.js'

// Every case runs on the embedded database and, when DATABASE_URL is set, on the real one too.
t.setTimeout(300_000)

eachDatabase(t, 'mailer sender', async (t, database) => {
  const handle = openDatabase(t, database)
  t.beforeEach(async () => { await handle.pool.query('truncate mail_messages; update mail_rate set next_slot_at = \'epoch\', hour_start = \'epoch\', hour_counts = array_fill(0, array[25])') })

  await t.test('each queued message is delivered once, with its Message-ID, both parts and the configured sender', async (t) => {
    const smtp = await startSmtp(t)
    const mailer = await startMailer(t, database.url, smtp.url)
    const ids = await queueEvents(handle, 5)
    const round = await mailer.app.sender.runOnce()
    t.match(round, { claimed: 5, sent: 5, retried: 0, failed: 0 })
    t.same([...smtp.byMessageId().keys()].sort(), [...ids].sort(), 'every Message-ID arrived')
    t.ok([...smtp.byMessageId().values()].every((n) => n === 1), 'each once')
    t.same(await statuses(handle), { sent: 5 })
    const again = await mailer.app.sender.runOnce()
    t.equal(again.claimed, 0, 'nothing is sent twice')
    t.equal(smtp.accepted.length, 5)

    const first = smtp.accepted.find((m) => m.messageId === ids[0])!
    t.equal(first.from, 'hello@hoc.example', 'envelope sender is MAILER_FROM')
    t.same(first.to, ['organizer1@school.example'])
    const parsed = await simpleParser(first.raw)
    t.same(parsed.from?.value, [{ name: 'Hour of Code', address: 'hello@hoc.example' }])
    t.same(parsed.replyTo?.value, [{ name: '', address: 'help@hoc.example' }])
    t.equal(parsed.subject, 'Your Hour of Code event at School 0 is registered')
    t.equal(headerOf(first.raw, 'Auto-Submitted'), 'auto-generated')
    t.match(parsed.text, /School or organization: School 0/)
    t.match(parsed.text, /Where: Berlin, Germany/)
    t.match(parsed.text, /Date: Tuesday, 8 December 2026/)
    t.match(parsed.text, /Expected participants: 20 participants/)
    t.match(String(parsed.html), /<td>School 0<\/td>/)
    t.match(String(parsed.html), /href="https:\/\/hoc\.example\/events\?country=DE#event-1"/)
  })

  await t.test('SMTP 4xx: deferred with a growing back-off, then delivered exactly once', async (t) => {
    const clock = testClock()
    const smtp = await startSmtp(t, { clock: clock.read })
    let refusals = 2
    smtp.decide = () => refusals-- > 0 ? { code: 451, message: '4.7.1 Try again later' } : undefined
    // random() = 1: the back-off is exactly base · 2^(attempt-1).
    const mailer = await startMailer(t, database.url, smtp.url, { MAILER_RETRY_BASE_MS: '60000', MAILER_RETRY_MAX_MS: '600000' }, { now: clock.read, sleep: clock.sleep, random: () => 1 })
    const [id] = await queueEvents(handle, 1)

    t.match(await mailer.app.sender.runOnce(), { claimed: 1, retried: 1 })
    let row = (await handle.pool.query('select status, attempts, next_attempt_at, last_error from mail_messages')).rows[0]
    t.equal(row.status, 'queued', 'back in the queue')
    t.equal(row.next_attempt_at.getTime(), clock.now + 60_000, 'first wait: the base')
    // issue 25: the oldest message still waiting, as the scraper sees it (queued 90 s ago).
    await handle.pool.query("update mail_messages set created_at = now() - interval '90 seconds'")
    const oldest = async () => Number(/^flashcrowd_mail_oldest_queued_seconds\{[^}]*\} (\S+)$/m.exec((await mailer.app.inject({ url: '/-/metrics', headers: scraper })).body)?.[1])
    const waited = await oldest()
    t.ok(waited >= 90 && waited < 150, `the oldest queued message's age (${waited} s)`)
    t.match(row.last_error, /^451 .*Try again later/)
    t.equal((await mailer.app.sender.runOnce()).claimed, 0, 'not tried again before its time')

    clock.advance(60_000)
    t.match(await mailer.app.sender.runOnce(), { claimed: 1, retried: 1 })
    row = (await handle.pool.query('select next_attempt_at, attempts from mail_messages')).rows[0]
    t.equal(row.next_attempt_at.getTime(), clock.now + 120_000, 'second wait: doubled')
    clock.advance(119_000)
    t.equal((await mailer.app.sender.runOnce()).claimed, 0)
    clock.advance(1000)
    t.match(await mailer.app.sender.runOnce(), { claimed: 1, sent: 1 })
    t.equal(smtp.attempts.length, 3, 'three attempts reached the server')
    t.same([...smtp.byMessageId()], [[id, 1]], 'one message accepted')
    row = (await handle.pool.query('select status, attempts, last_error from mail_messages')).rows[0]
    t.match(row, { status: 'sent', attempts: 3, last_error: null })
    const metrics = await mailer.app.inject({ url: '/-/metrics', headers: scraper })
    t.match(metrics.body, /flashcrowd_mail_retries_total\{kind="event-confirmation",role="mailer"\} 2/)
    t.match(metrics.body, /flashcrowd_mail_sent_total\{kind="event-confirmation",role="mailer"\} 1/)
    t.equal(await oldest(), 0, 'nothing waits once it is sent')
  })

  await t.test('the back-off is capped and jittered', async (t) => {
    const smtp = await startSmtp(t)
    let r = 0
    const mailer = await startMailer(t, database.url, smtp.url, { MAILER_RETRY_BASE_MS: '1000', MAILER_RETRY_MAX_MS: '10000' }, { random: () => r })
    const sender = mailer.app.sender
    t.equal(sender.backoff(1), 500, 'random 0: half the step')
    r = 1
    t.equal(sender.backoff(1), 1000)
    t.equal(sender.backoff(3), 4000)
    t.equal(sender.backoff(20), 10_000, 'capped')
    r = 0.5
    t.equal(sender.backoff(40), 7500, 'capped, then jittered')
  })

  await t.test('SMTP 5xx: failed for good, the reason kept, counted in metrics, never retried', async (t) => {
    const clock = testClock()
    const smtp = await startSmtp(t, { clock: clock.read })
    const mailer = await startMailer(t, database.url, smtp.url, {}, { now: clock.read, sleep: clock.sleep })
    const [bad, good] = await queueEvents(handle, 2)
    smtp.decide = (m) => m.messageId === bad ? { code: 554, message: '5.7.1 Message rejected' } : undefined
    t.match(await mailer.app.sender.runOnce(), { claimed: 2, sent: 1, failed: 1 })
    const rows = (await handle.pool.query('select message_id, status, last_error from mail_messages order by id')).rows
    t.match(rows[0], { message_id: bad, status: 'failed', last_error: /^554 .*Message rejected/ })
    t.match(rows[1], { message_id: good, status: 'sent' })
    clock.advance(86_400_000)
    t.equal((await mailer.app.sender.runOnce()).claimed, 0, 'a failed message is not tried again')
    const metrics = await mailer.app.inject({ url: '/-/metrics', headers: scraper })
    t.match(metrics.body, /flashcrowd_mail_failed_total\{kind="event-confirmation",role="mailer"\} 1/)
    t.match(metrics.body, /flashcrowd_mail_queue\{status="failed",role="mailer"\} 1/)
  })

  await t.test('a recipient refused with 550 at RCPT TO fails that message alone', async (t) => {
    const smtp = await startSmtp(t, {
      server: {
        onRcptTo (address, _session, callback) {
          callback(address.address.startsWith('organizer1@') ? Object.assign(new Error('5.1.1 No such user'), { responseCode: 550 }) : null)
        }
      }
    })
    const mailer = await startMailer(t, database.url, smtp.url)
    await queueEvents(handle, 3)
    t.match(await mailer.app.sender.runOnce(), { claimed: 3, sent: 2, failed: 1 })
    t.same(await statuses(handle), { sent: 2, failed: 1 })
  })

  await t.test('the SMTP server down for minutes: messages stay queued, are retried, and all arrive once it is back', async (t) => {
    const clock = testClock()
    const smtp = await startSmtp(t, { clock: clock.read })
    const proxy = await startTcpProxy(smtp.port)
    t.teardown(() => proxy.close())
    const mailer = await startMailer(t, database.url, `smtp://127.0.0.1:${proxy.port}`, { MAILER_RETRY_BASE_MS: '30000', MAILER_RETRY_MAX_MS: '120000' }, { now: clock.read, sleep: clock.sleep, random: () => 1 })
    const ids = await queueEvents(handle, 20)
    await proxy.cut()
    const down = await mailer.app.sender.runOnce()
    t.match(down, { claimed: 20, sent: 0, retried: 20 })
    t.same(await statuses(handle), { queued: 20 }, 'all still queued')
    t.ok(mailer.app.sender.unreachableSince !== undefined, 'the server is known to be unreachable')
    const health = await mailer.app.inject('/-/health')
    t.equal(health.statusCode, 200, 'the mailer stays up')
    t.match(health.json(), { smtp: 'unreachable', lastError: /ECONNECTION|ESOCKET|ECONNREFUSED/ })
    // Minutes of outage: every retry fails while it lasts.
    for (let minute = 0; minute < 4; minute++) {
      clock.advance(60_000)
      const r = await mailer.app.sender.runOnce()
      t.equal(r.sent, 0, `minute ${minute + 1}: nothing gets through`)
    }
    t.same(await statuses(handle), { queued: 20 }, 'nothing lost, nothing failed')
    await proxy.restore()
    clock.advance(300_000)
    let sent = 0
    for (let i = 0; i < 5 && sent < 20; i++) { sent += (await mailer.app.sender.runOnce()).sent; clock.advance(120_000) }
    t.equal(sent, 20, 'all delivered once the server is back')
    t.same([...smtp.byMessageId().keys()].sort(), [...ids].sort())
    t.ok([...smtp.byMessageId().values()].every((n) => n === 1), 'none twice')
    t.equal(mailer.app.sender.unreachableSince, undefined)
  })

  await t.test('the running loop through an outage: it backs off instead of cycling, and sends everything once the server is back', async (t) => {
    const smtp = await startSmtp(t)
    const proxy = await startTcpProxy(smtp.port)
    t.teardown(() => proxy.close())
    await proxy.cut()
    const ids = await queueEvents(handle, 8)
    const mailer = await startMailer(t, database.url, `smtp://127.0.0.1:${proxy.port}`, { MAILER_RETRY_BASE_MS: '100', MAILER_RETRY_MAX_MS: '400', MAILER_POLL_MS: '20' }, { autoStart: true })
    t.ok(await until(() => mailer.app.sender.unreachableSince !== undefined), 'the outage is noticed')
    await new Promise((resolve) => setTimeout(resolve, 1500)) // an outage of 1.5 s: at most ~8 tries each at these settings
    const { rows: [tries] } = await handle.pool.query<{ most: number }>('select max(attempts) as most from mail_messages')
    t.ok(tries.most <= 10, `no message was cycled through the dead server (at most ${tries.most} attempts each)`)
    // Sampled while the loop runs: a round may be between its claim and its marks ('sending').
    const during = await statuses(handle)
    t.same([during.failed ?? 0, during.sent ?? 0, (during.queued ?? 0) + (during.sending ?? 0)], [0, 0, 8], `all 8 waiting, none failed, none sent (${JSON.stringify(during)})`)
    await proxy.restore()
    t.ok(await until(async () => (await statuses(handle)).sent === 8, 30_000), 'all sent once the server is back')
    t.same([...smtp.byMessageId().keys()].sort(), [...ids].sort())
    t.equal(smtp.accepted.length, 8, 'none twice')
  })

  await t.test('the per-second quota holds over every one-second window (injected clock)', async (t) => {
    const clock = testClock(Math.ceil(Date.now() / 1000) * 1000 + 60_123)
    const smtp = await startSmtp(t, { clock: clock.read })
    // One connection: the test clock moves only while the sender waits for a slot, so each arrival is stamped with its slot.
    const mailer = await startMailer(t, database.url, smtp.url, { MAILER_RATE_PER_SECOND: '5', MAILER_SMTP_POOL_SIZE: '1' }, { now: clock.read, sleep: clock.sleep })
    await queueEvents(handle, 23)
    const started = clock.now
    for (let i = 0; i < 20 && smtp.accepted.length < 23; i++) {
      const r = await mailer.app.sender.runOnce()
      if (r.claimed === 0) clock.advance(r.waitMs)
    }
    t.equal(smtp.accepted.length, 23, 'all sent')
    const times = smtp.accepted.map((m) => m.at).sort((a, b) => a - b)
    for (const from of times) {
      const inWindow = times.filter((x) => x >= from && x < from + 1000).length
      t.ok(inWindow <= 5, `at most 5 in [${from - started}, +1 s): ${inWindow}`)
    }
    t.ok(times[times.length - 1] - started >= 4000, 'the 23 took at least 4.4 s of clock')
  })

  await t.test('a slow quota (SES sandbox: 1 per second) and the daily quota, shared by two mailers', async (t) => {
    const clock = testClock()
    const smtp = await startSmtp(t, { clock: clock.read })
    const env = { MAILER_RATE_PER_SECOND: '1', MAILER_RATE_PER_DAY: '10', MAILER_SMTP_POOL_SIZE: '1' }
    const a = await startMailer(t, database.url, smtp.url, env, { now: clock.read, sleep: clock.sleep })
    const b = await startMailer(t, database.url, smtp.url, env, { now: clock.read, sleep: clock.sleep })
    await queueEvents(handle, 14)
    let waited = 0
    for (let i = 0; i < 60; i++) {
      const r = await (i % 2 === 0 ? a : b).app.sender.runOnce()
      if (r.claimed > 0) continue
      if (r.waitMs > 3_600_000) { waited = r.waitMs; break }
      clock.advance(r.waitMs) // the next second's slot
    }
    t.equal(smtp.accepted.length, 10, 'ten in the day, by both mailers together')
    const times = smtp.accepted.map((m) => m.at).sort((x, y) => x - y)
    for (let i = 1; i < times.length; i++) t.ok(times[i] - times[i - 1] >= 1000, 'one per second')
    t.ok(waited > 23 * 3_600_000, `the next send waits for the day window (${Math.round(waited / 60_000)} min)`)
    t.same(await statuses(handle), { sent: 10, queued: 4 }, 'the rest waits, queued')
    clock.advance(waited)
    for (let i = 0; i < 10 && smtp.accepted.length < 14; i++) {
      const r = await a.app.sender.runOnce()
      if (r.claimed === 0) clock.advance(r.waitMs)
    }
    t.equal(smtp.accepted.length, 14, 'the next day the rest goes')
  })

  await t.test('a claim committed unseen (the connection died at its commit, as in a failover) is given back at once, not after its lease', async (t) => {
    const smtp = await startSmtp(t)
    const mailer = await startMailer(t, database.url, smtp.url, { MAILER_LEASE_MS: '600000' })
    const ids = await queueEvents(handle, 3)
    // The commit reaches the database, its answer never reaches the mailer.
    const pool = mailer.database.pool as unknown as { connect: () => Promise<pg.PoolClient> }
    const connect = pool.connect.bind(pool)
    pool.connect = async () => {
      pool.connect = connect
      const client = await connect()
      const query = client.query.bind(client) as (...args: unknown[]) => Promise<unknown>
      client.query = (async (...args: unknown[]) => {
        const result = await query(...args)
        if (args[0] === 'commit') throw new Error('Connection terminated unexpectedly')
        return result
      }) as typeof client.query
      return client
    }
    await t.rejects(mailer.app.sender.runOnce(), /Connection terminated/)
    t.same(await statuses(handle), { sending: 3 }, 'the claim did commit: its rows are leased for 10 minutes')
    const round = await mailer.app.sender.runOnce()
    t.match(round, { claimed: 3, sent: 3 }, 'the next round gives them back and sends them')
    t.same([...smtp.byMessageId().keys()].sort(), [...ids].sort())
    t.ok([...smtp.byMessageId().values()].every((n) => n === 1), 'each once')
    t.same(await statuses(handle), { sent: 3 })
  })

  await t.test('two mailers at once over 200 messages: each Message-ID delivered once', async (t) => {
    const smtp = await startSmtp(t)
    const ids = await queueEvents(handle, 200)
    const env = { MAILER_BATCH_MAX: '20', MAILER_POLL_MS: '20', MAILER_SMTP_POOL_SIZE: '4' }
    const a = await startMailer(t, database.url, smtp.url, env, { autoStart: true })
    const b = await startMailer(t, database.url, smtp.url, env, { autoStart: true })
    t.ok(await until(async () => (await statuses(handle)).sent === 200, 60_000), 'all 200 sent')
    const counts = smtp.byMessageId()
    t.equal(counts.size, 200)
    t.same([...counts.keys()].sort(), [...ids].sort())
    t.ok([...counts.values()].every((n) => n === 1), 'none twice')
    t.equal(smtp.accepted.length, 200)
    const sentBy = async (app: typeof a.app) => Number(/flashcrowd_mail_sent_total\{[^}]*\} (\d+)/.exec((await app.inject({ url: '/-/metrics', headers: scraper })).body)?.[1] ?? 0)
    const [na, nb] = [await sentBy(a.app), await sentBy(b.app)]
    t.equal(na + nb, 200, `shared between the mailers (${na} + ${nb})`)
  })

  await t.test('a message still failing after MAILER_GIVE_UP_AFTER_S is failed, with why', async (t) => {
    const clock = testClock()
    const smtp = await startSmtp(t, { clock: clock.read })
    smtp.decide = () => ({ code: 452, message: '4.2.2 Mailbox full' })
    const mailer = await startMailer(t, database.url, smtp.url, { MAILER_GIVE_UP_AFTER_S: '3600', MAILER_RETRY_BASE_MS: '600000', MAILER_RETRY_MAX_MS: '600000' }, { now: clock.read, sleep: clock.sleep, random: () => 1 })
    await queueEvents(handle, 1)
    let failed = 0
    for (let i = 0; i < 10 && failed === 0; i++) { failed = (await mailer.app.sender.runOnce()).failed; clock.advance(600_000) }
    t.equal(failed, 1)
    const row = (await handle.pool.query('select status, attempts, last_error from mail_messages')).rows[0]
    t.equal(row.status, 'failed')
    t.match(row.last_error, /^gave up after \d+ attempts: 452 .*Mailbox full/)
    t.equal(smtp.accepted.length, 0)
  })
})
