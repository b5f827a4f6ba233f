import t from 'tap'
import { eachDatabase } from '../../helpers/database.js'
import { startBackend, eventually } from '../../helpers/backend.js'
import { readCounter, PARTICIPANTS } from '../../../common/counters.js'

const NOW = Date.parse('2026-11-22T12:00:00Z')
const valid = { organizer: 'Grace Hopper', email: 'Grace@School.example', school: 'Arlington Middle School', country: 'US', city: 'Arlington', expectedParticipants: 120, eventDate: '2026-12-08' }

eachDatabase(t, 'POST /v1/events and /v1/completions', async (t, database) => {
  const be = await startBackend(t, database.url, {}, { now: () => NOW })
  const counter = () => readCounter(be.database.db, PARTICIPANTS)

  await t.test('an event sign-up is stored, bumps the counter and purges events + counter', async (t) => {
    const before = await counter()
    const res = await be.post('/v1/events', valid)
    t.equal(res.status, 201)
    t.match(res.json, { organizer: 'Grace Hopper', country: 'US', expectedParticipants: 120, eventDate: '2026-12-08' })
    t.notOk('email' in res.json, 'the organizer e-mail is not echoed')
    t.equal(await counter(), before + 120)
    const row = await be.database.db.selectFrom('events').select('email').where('id', '=', res.json.id).executeTakeFirstOrThrow()
    t.equal(row.email, 'grace@school.example')
    t.ok(await eventually(() => be.messages.some((m) => m.event.kind === 'keys' && m.event.keys.includes('events') && m.event.keys.includes('counter'))))
  })

  await t.test('field-level validation', async (t) => {
    const before = await counter()
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ country: 'XX' }, 'country'], [{ country: 'us' }, 'country'], [{ email: 'not-an-email' }, 'email'],
      [{ expectedParticipants: 0 }, 'expectedParticipants'], [{ expectedParticipants: '12' }, 'expectedParticipants'],
      [{ expectedParticipants: 1.5 }, 'expectedParticipants'], [{ eventDate: '2026-02-30' }, 'eventDate'],
      [{ eventDate: '1999-01-01' }, 'eventDate'], [{ eventDate: 'tomorrow' }, 'eventDate'], [{ school: 'x'.repeat(161) }, 'school']
    ]
    for (const [patch, field] of cases) {
      const res = await be.post('/v1/events', { ...valid, ...patch })
      t.equal(res.status, 400, `${JSON.stringify(patch)} → 400`)
      t.equal(res.json.field, field)
    }
    t.equal(await counter(), before, 'nothing changed')
  })

  await t.test('a completion gives a certificate URL and bumps the counter', async (t) => {
    const tutorial = await be.database.db.selectFrom('tutorials').select('slug').orderBy('id').executeTakeFirstOrThrow()
    const before = await counter()
    const res = await be.post('/v1/completions', { tutorial: tutorial.slug, name: 'Alan T', country: 'GB' })
    t.equal(res.status, 201)
    t.match(res.json.certificateUrl, /^\/certificates\/[A-Za-z0-9_-]{16}$/)
    t.equal(res.json.certificateUrl, `/certificates/${res.json.id}`)
    t.equal(await counter(), before + 1)
    const missing = await be.post('/v1/completions', { tutorial: 'no-such-tutorial', name: 'A', country: 'GB' })
    t.equal(missing.status, 404)
    const badCountry = await be.post('/v1/completions', { tutorial: tutorial.slug, name: 'A', country: 'ZZ' })
    t.equal(badCountry.status, 400)
    t.equal(badCountry.json.field, 'country')
    t.equal(await counter(), before + 1)
  })
})
