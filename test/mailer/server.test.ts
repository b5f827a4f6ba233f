/**
 * `npm run mailer` as its own process: killed with SIGKILL between the SMTP
 * server's acceptance and the mark, its messages are resent by the next
 * mailer with the same Message-ID (at-least-once; the receiver dedupes).
 */
import t from 'tap'
import { simpleParser } from 'mailparser'
import { eachDatabase, openDatabase } from '../helpers/database.js'
import { spawnScript, waitForLine } from '../helpers/spawn.js'
import { headerOf, queueEvents, startMailer, startSmtp, statuses, testClock, until } from './helpers.js'
import { scraper } from '../helpers/metrics.js'

// Every case runs on the embedded database and, when DATABASE_URL is set, on the real one too.
t.setTimeout(300_000)

eachDatabase(t, 'mailer process', async (t, database) => {
  const handle = openDatabase(t, database)

  await t.test('kill -9 between the send and the mark: the next mailer resends with the same Message-ID, one distinct message each', async (t) => {
    await handle.pool.query('truncate mail_messages')
    const smtp = await startSmtp(t)
    const ids = await queueEvents(handle, 5)
    const child = spawnScript('mailer/server.ts', {
      DATABASE_URL: database.url,
      SMTP_URL: smtp.url,
      PORT: '0',
      LOG_LEVEL: 'info',
      MAILER_RATE_PER_SECOND: '0',
      MAILER_SMTP_POOL_SIZE: '1',
      MAILER_POLL_MS: '50',
      MAILER_LEASE_MS: '600000',
      MAILER_SITE_URL: 'https://hoc.example'
    })
    t.teardown(() => { if (child.child.exitCode === null) child.child.kill('SIGKILL') })
    // The first message the child delivers: the server has it all, and the child dies before it hears "250".
    let killed = false
    smtp.decide = async () => {
      if (killed) return undefined
      killed = true
      process.kill(child.child.pid!, 'SIGKILL')
      await child.exited
      return undefined
    }
    t.ok(await until(() => killed, 60_000), 'the child sent a message')
    t.equal(await child.exited, null, 'the child is gone')
    t.equal(child.child.signalCode, 'SIGKILL')
    t.ok(await until(() => smtp.accepted.length === 1), 'the server accepted that message')
    t.same(await statuses(handle), { sending: 5 }, 'its claim left every row "sending", the accepted one too')

    // A second mailer: nothing before the lease ends, then every row of the dead claim.
    const clock = testClock()
    const second = await startMailer(t, database.url, smtp.url, {}, { now: clock.read, sleep: clock.sleep })
    t.equal((await second.app.sender.runOnce()).claimed, 0, 'a live lease is respected')
    clock.advance(600_000)
    t.match(await second.app.sender.runOnce(), { claimed: 5, sent: 5 })
    t.same(await statuses(handle), { sent: 5 })

    t.equal(smtp.accepted.length, 6, 'the one that was accepted before the kill arrived again')
    const counts = smtp.byMessageId()
    t.equal(counts.size, 5, 'deduplicated by Message-ID: exactly one distinct message each')
    t.same([...counts.keys()].sort(), [...ids].sort())
    const twice = [...counts].filter(([, n]) => n === 2).map(([id]) => id)
    t.equal(twice.length, 1, 'only the message in flight at the kill is duplicated')
    const [a, b] = smtp.accepted.filter((m) => m.messageId === twice[0])
    const [pa, pb] = [await simpleParser(a.raw), await simpleParser(b.raw)]
    t.equal(headerOf(a.raw, 'Date'), headerOf(b.raw, 'Date'), 'the copy has the same Date')
    t.equal(pa.subject, pb.subject)
    t.equal(pa.text, pb.text, 'and the same text')
    t.equal(pa.html, pb.html, 'and the same HTML')
    const metrics = await second.app.inject({ url: '/-/metrics', headers: scraper })
    t.match(metrics.body, /flashcrowd_mail_reclaimed_total\{role="mailer"\} 5/, 'the resends after an expired lease are counted')
  })

  await t.test('without SMTP_URL the process writes .eml files under the state directory and says where', async (t) => {
    await handle.pool.query('truncate mail_messages')
    const { mkdtemp, readdir, readFile, rm } = await import('node:fs/promises')
    const { tmpdir } = await import('node:os')
    const path = await import('node:path')
    const state = await mkdtemp(path.join(tmpdir(), 'fc-mailer-'))
    t.teardown(() => rm(state, { recursive: true, force: true }))
    const ids = await queueEvents(handle, 3)
    const child = spawnScript('mailer/server.ts', { DATABASE_URL: database.url, FLASHCROWD_STATE_DIR: state, PORT: '0', LOG_LEVEL: 'info', MAILER_POLL_MS: '50', MAILER_RATE_PER_SECOND: '0' })
    t.teardown(async () => { if (child.child.exitCode === null) { child.child.kill('SIGTERM'); await child.exited } })
    const where = await waitForLine(child, /messages are written to (\S+) /, 60_000)
    t.equal(where, path.join(state, 'mail'), child.output())
    t.ok(await until(async () => (await statuses(handle)).sent === 3, 60_000), 'all marked sent')
    const files = (await readdir(path.join(state, 'mail'))).sort()
    t.same(files, ids.map((id) => `${id.slice(1, -1)}.eml`).sort(), 'one file per Message-ID')
    const raw = await readFile(path.join(state, 'mail', files[0]), 'utf8')
    t.match(headerOf(raw, 'Message-ID'), /^<.+@test\.flashcrowd>$/)
    child.child.kill('SIGTERM')
    t.equal(await child.exited, 0, 'SIGTERM closes it cleanly')
  })
})

t.test('a malformed setting stops the mailer with a message naming it', async (t) => {
  const child = spawnScript('mailer/server.ts', { SMTP_URL: 'http://mail.example', MAILER_RATE_PER_SECOND: '-1' })
  t.equal(await child.exited, 2)
  t.match(child.output(), /SMTP_URL/)
  t.match(child.output(), /MAILER_RATE_PER_SECOND/)
})
