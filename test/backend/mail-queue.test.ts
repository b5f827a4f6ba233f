/**
 * The backend queues each confirmation e-mail in the same transaction as its
 * write (mail_messages): a committed event or completion has its message, a
 * rolled-back or refused one has none, a replay adds none, and the request
 * never waits for SMTP.
 */
import t from 'tap'
import { GroupCommit } from '../../common/group-commit.js'
import { eventWrites } from '../../backend/routes/events.js'
import { WalPosition } from '../../backend/wal.js'
import { batchStatement, runWriteBatch, type BatchResult, type PendingWrite } from '../../backend/write-batch.js'
import type { EventInput } from '../../backend/schemas.js'
import { eachDatabase, openDatabase } from '../helpers/database.js'
import { startBackend } from '../helpers/backend.js'

const MESSAGE_ID = /^<[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}@flashcrowd\.localhost>$/

function signup (n: number, over: Partial<EventInput> = {}): EventInput {
  const date = new Date(Date.now() + 30 * 86_400_000).toISOString().slice(0, 10)
  return { organizer: `Organizer ${n}`, email: `Organizer.${n}@School.example`, school: `School ${n}`, country: 'KE', city: 'Nairobi', expectedParticipants: 30 + n, eventDate: date, ...over }
}

eachDatabase(t, 'mail queue', async (t, database) => {
  const handle = openDatabase(t, database)
  const mails = async () => (await handle.pool.query('select message_id, kind, recipient, payload, status, attempts from mail_messages order by id')).rows
  t.beforeEach(async () => { await handle.pool.query('truncate mail_messages') })

  await t.test('an event sign-up commits its confirmation e-mail with it', async (t) => {
    const be = await startBackend(t, database.url)
    const input = signup(1)
    const res = await be.post('/v1/events', input)
    t.equal(res.status, 201)
    const rows = await mails()
    t.equal(rows.length, 1)
    t.match(rows[0], {
      message_id: MESSAGE_ID,
      kind: 'event-confirmation',
      recipient: 'organizer.1@school.example',
      status: 'queued',
      attempts: 0,
      payload: { eventId: String(res.json.id), organizer: 'Organizer 1', school: 'School 1', country: 'KE', city: 'Nairobi', expectedParticipants: 31, eventDate: input.eventDate }
    })
  })

  await t.test('a completion with an address queues the certificate link; without one, nothing', async (t) => {
    const be = await startBackend(t, database.url)
    const tutorial = (await handle.pool.query('select slug, title from tutorials order by id limit 1')).rows[0]
    const withMail = await be.post('/v1/completions', { tutorial: tutorial.slug, name: 'Amina', country: 'KE', email: 'Amina@Example.org' })
    t.equal(withMail.status, 201)
    t.notOk('email' in withMail.json, 'the answer does not echo the address')
    const without = await be.post('/v1/completions', { tutorial: tutorial.slug, name: 'Brian', country: 'KE' })
    t.equal(without.status, 201)
    const rows = await mails()
    t.equal(rows.length, 1, 'one message: only the completion that left an address')
    t.match(rows[0], { message_id: MESSAGE_ID, kind: 'certificate', recipient: 'amina@example.org', payload: { certificateId: withMail.json.id, name: 'Amina', tutorial: tutorial.slug, tutorialTitle: tutorial.title } })
    const unknown = await be.post('/v1/completions', { tutorial: 'no-such-tutorial', name: 'C', country: 'KE', email: 'c@example.org' })
    t.equal(unknown.status, 404)
    t.equal((await mails()).length, 1, 'an unknown tutorial queues nothing')
  })

  await t.test('a bad address is a 400 naming the field and changes nothing', async (t) => {
    const be = await startBackend(t, database.url)
    const slug = (await handle.pool.query('select slug from tutorials order by id limit 1')).rows[0].slug
    const count = async () => Number((await handle.pool.query('select count(*) as n from completions')).rows[0].n)
    const before = await count()
    for (const email of ['not-an-address', 'a@b', 'x@y.org\r\nBcc: z@w.org', 'a@b.org, c@d.org', '', 'x'.repeat(250) + '@a.org']) {
      const res = await be.post('/v1/completions', { tutorial: slug, name: 'Dee', country: 'KE', email })
      t.equal(res.status, 400, JSON.stringify(email))
      t.equal(res.json.field, 'email')
    }
    t.equal(await count(), before, 'no completion written')
    t.same(await mails(), [], 'no message queued')
  })

  await t.test('a replayed write queues no second message', async (t) => {
    const be = await startBackend(t, database.url)
    const input = signup(2)
    const first = await be.post('/v1/events', input, { 'idempotency-key': 'mail-replay-0001' })
    const again = await be.post('/v1/events', input, { 'idempotency-key': 'mail-replay-0001' })
    t.equal(first.status, 201)
    t.equal(again.headers.get('idempotent-replayed'), 'true')
    t.equal((await mails()).length, 1)
  })

  await t.test('a rolled-back write leaves no mail row', async (t) => {
    const client = await handle.pool.connect()
    try {
      await client.query('begin')
      let n = 0
      // The batch's own statement for one unkeyed sign-up, run by hand so the transaction can be rolled back.
      const statement = batchStatement(eventWrites.statement!([signup(3)], { counterShard: 'participants:0', messageId: () => `<rolled-back-${n++}@flashcrowd.localhost>` }), [undefined], [undefined], [3600])
      await client.query(statement.text, statement.values)
      t.equal((await client.query('select count(*)::int as n from mail_messages')).rows[0].n, 1, 'inside the transaction the message exists')
      await client.query('rollback')
    } finally {
      client.release()
    }
    t.same(await mails(), [], 'after the rollback it does not')
    t.equal((await handle.pool.query(`select count(*)::int as n from events where school = 'School 3'`)).rows[0].n, 0, 'nor the event')
  })

  await t.test('a write the database refuses fails alone: its neighbours commit with one message each, it with none', async (t) => {
    const wal = new WalPosition()
    let splits = 0
    const batches: number[] = []
    const gc = new GroupCommit<PendingWrite, BatchResult>({
      run: (items) => { batches.push(items.length); return runWriteBatch(items, { pool: handle.pool, idempotencyTtlSeconds: 3600, wal, mailDomain: 'flashcrowd.localhost' }) },
      maxBatch: 64, maxWaitMs: 0, concurrency: 1, isolate: () => true, onSplit: () => { splits++ }
    })
    // 0 participants passes nothing but the table's check: the whole batch statement fails, then the batch is split.
    const inputs = [signup(10), signup(11), signup(12, { expectedParticipants: 0, school: 'Refused' }), signup(13), signup(14)]
    const results = await Promise.allSettled(inputs.map((input) => gc.submit({ kind: eventWrites, input })))
    t.equal(batches[0], 5, 'the five went together')
    t.ok(splits > 0, 'the batch was split to find the offender')
    t.equal(results.filter((r) => r.status === 'fulfilled' && !(r.value instanceof Error)).length, 4)
    t.equal(results[2].status, 'rejected', 'the refused write fails alone')
    const rows = await mails()
    t.equal(rows.length, 4, 'one message per committed event, none left by the failed attempts')
    t.same(rows.map((r) => r.payload.school).sort(), ['School 10', 'School 11', 'School 13', 'School 14'])
    t.equal(new Set(rows.map((r) => r.message_id)).size, 4, 'each its own Message-ID')
  })
})
