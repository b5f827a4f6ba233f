/**
 * Form posts end to end: the real backend on port 0, the frontend on a
 * read-only pool (on Postgres: a role with SELECT rights only), 303 to the
 * page that shows the write, validation errors beside their fields, the
 * backend unavailable, cross-site posts refused.
 */
import t from 'tap'
import { createServer, type IncomingMessage } from 'node:http'
import { once } from 'node:events'
import { randomBytes } from 'node:crypto'
import pg from 'pg'
import { MemoryBus } from '../../common/bus.js'
import { readCounter, PARTICIPANTS } from '../../common/counters.js'
import { createDatabase } from '../../common/db.js'
import { eachDatabase, openDatabase, type TestDatabase } from '../helpers/database.js'
import { browserNonce, eventually, formPost, startBackend, startFrontend } from './helpers.js'

/** On the real server: a login role with SELECT only, and the URL to use it. */
async function selectOnlyUrl (t: Parameters<Parameters<typeof eachDatabase>[2]>[0], database: TestDatabase): Promise<string> {
  if (database.kind !== 'postgres') return database.url
  const role = `fc_ro_${randomBytes(4).toString('hex')}`
  const url = new URL(database.url)
  const dbName = url.pathname.slice(1)
  const c = new pg.Client({ connectionString: database.url })
  await c.connect()
  await c.query(`create role ${role} login`)
  await c.query(`grant connect on database ${dbName} to ${role}`)
  await c.query(`grant usage on schema public to ${role}`)
  await c.query(`grant select on all tables in schema public to ${role}`)
  await c.end()
  t.teardown(async () => {
    const admin = new pg.Client({ connectionString: database.url })
    await admin.connect().then(() => admin.query(`drop owned by ${role}`)).catch(() => {})
    await admin.end().catch(() => {})
    const root = new pg.Client({ connectionString: database.adminUrl })
    await root.connect()
    await root.query(`drop database if exists ${dbName} with (force)`).catch(() => {})
    await root.query(`drop role if exists ${role}`)
    await root.end()
  })
  url.username = role
  url.password = ''
  return url.toString()
}

eachDatabase(t, 'form → backend → 303 → visible, on a SELECT-only read role', async (t, database) => {
  const rw = openDatabase(t, database)
  const readUrl = await selectOnlyUrl(t, database)
  if (database.kind === 'postgres') {
    // The proof that the frontend cannot write: its role has no rights to.
    const probe = createDatabase({ url: readUrl, max: 1 })
    await t.rejects(probe.db.insertInto('counters').values({ name: 'x', value: 1 }).execute(), /permission denied/)
    await probe.close()
  }
  const bus = new MemoryBus()
  const backend = await startBackend(t, database.url, bus)
  const { app } = await startFrontend(t, database.url, { readUrl, backendUrls: [backend.url], bus })
  const article = await rw.db.selectFrom('news').select(['id', 'slug']).orderBy('published_at', 'desc').executeTakeFirstOrThrow()
  const url = `/news/${article.slug}`

  // The page is in the render cache before the write.
  await app.inject({ url })
  t.equal((await app.inject({ url })).headers['x-render-cache'], 'hit')

  const posted = await app.inject(formPost(`${url}/comments`, { author: 'Ada L.', body: 'We ran <this> with 3 classes & loved it' }))
  t.equal(posted.statusCode, 303)
  t.equal(posted.headers['cache-control'], 'private, no-store')
  const location = String(posted.headers.location)
  t.match(location, new RegExp(`^/news/${article.slug}\\?rev=[0-9A-F]+/[0-9A-F]+#comment-\\d+$`), 'redirect carries the commit position')
  const shown = await app.inject({ url: location.split('#')[0] })
  t.equal(shown.statusCode, 200)
  t.equal(shown.headers['cache-control'], 'private, no-store', 'the author\'s view is never shared')
  t.equal(shown.headers['x-read-your-writes'], 'replayed')
  t.ok(shown.body.includes(`id="${location.split('#')[1]}"`), 'the new comment is on the page')
  t.ok(shown.body.includes('We ran &lt;this&gt; with 3 classes &amp; loved it'))
  // Everybody else sees it once the outbox event purged the render cache.
  await eventually(async () => (await app.inject({ url })).body.includes('We ran &lt;this&gt;'))
  const shared = await app.inject({ url })
  t.match(shared.headers['cache-control'], /^public/)

  // An event sign-up: 303 to its country's list, where it is on top.
  const ev = await app.inject(formPost('/events', { organizer: 'Grace H.', email: 'grace@school.example', school: 'Harbor Middle School', country: 'NZ', city: 'Wellington', expectedParticipants: '42', eventDate: '2026-12-09' }))
  t.equal(ev.statusCode, 303)
  t.match(String(ev.headers.location), /^\/events\?country=NZ&rev=[0-9A-F]+\/[0-9A-F]+#event-\d+$/)
  const evPage = await app.inject({ url: String(ev.headers.location).split('#')[0] })
  t.equal(evPage.statusCode, 200)
  t.ok(evPage.body.includes('Harbor Middle School'))
  t.notOk(evPage.body.includes('grace@school.example'), 'emails are never shown')

  // "I did it" → certificate.
  const tutorial = await rw.db.selectFrom('tutorials').select(['slug', 'title']).executeTakeFirstOrThrow()
  const done = await app.inject(formPost(`/tutorials/${tutorial.slug}/done`, { name: 'Linus T.', country: 'FI' }))
  t.equal(done.statusCode, 303)
  t.match(String(done.headers.location), /^\/certificates\/[A-Za-z0-9_-]+\?rev=/)
  const cert = await app.inject({ url: String(done.headers.location) })
  t.equal(cert.statusCode, 200)
  t.ok(cert.body.includes('Linus T.'))
  t.ok(cert.body.includes(tutorial.title.replace(/&/g, '&amp;')))

  // The counter moves (42 expected + 1 completion) once the `counter` key event arrived.
  const before = await readCounter(rw.db, PARTICIPANTS)
  await eventually(async () => (await app.inject({ url: '/counter.json' })).json().participants === before)

  // Backend-side validation (a date the frontend cannot judge) comes back beside its field.
  const old = await app.inject(formPost('/events', { organizer: 'Old', email: 'old@school.example', school: 'Past School', country: 'US', city: 'Austin', expectedParticipants: '5', eventDate: '2001-01-01' }))
  t.equal(old.statusCode, 400)
  t.match(old.body, /<p class="field-error" id="event-eventDate-error">Date [^<]*past/)
  t.match(old.body, /value="Past School"/, 'what was typed is kept')

  // Unknown article: 404 page, nothing written.
  const missing = await app.inject(formPost('/news/no-such-article/comments', { author: 'A', body: 'B' }))
  t.equal(missing.statusCode, 404)

  // The frontend never wrote: every statement it ran was a read (the role could not have).
  if (database.kind === 'postgres') t.pass('all of the above ran with a SELECT-only read role')
})

eachDatabase(t, 'invalid input is re-shown with messages beside the fields; nothing is forwarded', async (t, database) => {
  const hits: IncomingMessage[] = []
  const fake = createServer((req, res) => { hits.push(req); req.resume(); res.writeHead(500).end() })
  fake.listen(0, '127.0.0.1')
  await once(fake, 'listening')
  t.teardown(() => { fake.close() })
  const port = (fake.address() as { port: number }).port
  const rw = openDatabase(t, database)
  const { app } = await startFrontend(t, database.url, { backendUrls: [`http://127.0.0.1:${port}`] })
  const article = await rw.db.selectFrom('news').select(['slug']).executeTakeFirstOrThrow()

  const empty = await app.inject(formPost(`/news/${article.slug}/comments`, { author: '  ', body: '<script>alert(1)</script>' }))
  t.equal(empty.statusCode, 400)
  t.equal(empty.headers['cache-control'], 'private, no-store')
  t.match(empty.body, /role="alert"/)
  t.match(empty.body, /<p class="field-error" id="comment-author-error">Your name is required\.<\/p>/)
  t.match(empty.body, /id="comment-author"[^>]*aria-invalid="true"[^>]*aria-describedby="comment-author-hint comment-author-error"/)
  t.ok(empty.body.includes('&lt;script&gt;alert(1)&lt;/script&gt;</textarea>'), 'the typed text is re-shown, escaped')
  const long = await app.inject(formPost(`/news/${article.slug}/comments`, { author: 'x'.repeat(81), body: 'ok' }))
  t.equal(long.statusCode, 400)
  t.match(long.body, /at most 80 characters/)

  const ev = await app.inject(formPost('/events', { organizer: 'A', email: 'not-an-email', school: 'S', country: 'XX', city: 'C', expectedParticipants: '0', eventDate: '2026-02-30' }))
  t.equal(ev.statusCode, 400)
  for (const f of ['email', 'country', 'expectedParticipants', 'eventDate']) t.match(ev.body, new RegExp(`id="event-${f}-error"`), `${f} flagged`)
  t.notMatch(ev.body, /id="event-organizer-error"/)

  const extra = await app.inject(formPost(`/news/${article.slug}/comments`, { author: 'A', body: 'B', admin: '1' }))
  t.equal(extra.statusCode, 400)
  t.match(extra.body, /fields we do not know \(admin\)/)

  const done = await app.inject(formPost('/tutorials/no-such-tutorial/done', { name: '', country: 'US' }))
  t.equal(done.statusCode, 404, 'a form for something that does not exist is a 404')
  t.equal(hits.length, 0, 'nothing invalid reached the backend')
})

eachDatabase(t, 'issue 14: bytes that are not UTF-8 text, C1 controls and encoded surrogates are re-shown beside their field; nothing is forwarded', async (t, database) => {
  const hits: IncomingMessage[] = []
  const fake = createServer((req, res) => { hits.push(req); req.resume(); res.writeHead(500).end() })
  fake.listen(0, '127.0.0.1')
  await once(fake, 'listening')
  t.teardown(() => { fake.close() })
  const port = (fake.address() as { port: number }).port
  const rw = openDatabase(t, database)
  const { app } = await startFrontend(t, database.url, { backendUrls: [`http://127.0.0.1:${port}`] })
  const article = await rw.db.selectFrom('news').select(['slug']).executeTakeFirstOrThrow()
  // As a browser sends it: the form's own nonce, then the fields exactly as given.
  const post = (payload: string | Buffer, url = `/news/${article.slug}/comments`) => {
    const base = formPost(url, {})
    return app.inject({ ...base, payload: Buffer.concat([Buffer.from(`${base.payload}&`), Buffer.from(payload)]) })
  }

  const cases: Array<[string, string | Buffer, string, RegExp]> = [
    ['percent-encoded bytes that are not UTF-8', 'author=Ada&body=%FF%FE', 'body', /not valid UTF-8/],
    ['a truncated sequence', 'author=Ada%C3&body=ok', 'author', /not valid UTF-8/],
    ['a % that encodes nothing', 'author=Ada&body=100%zz', 'body', /not valid UTF-8/],
    ['a surrogate encoded as UTF-8 (CESU)', 'author=%ED%A0%80&body=ok', 'author', /not valid UTF-8/],
    ['raw bytes that are not UTF-8', Buffer.concat([Buffer.from('author=Ada&body=caf'), Buffer.from([0xe9])]), 'body', /not valid UTF-8/],
    ['a C1 control (U+0085)', 'author=Ada&body=a%C2%85b', 'body', /C1 control/],
    ['a C1 control (U+009B)', 'author=%C2%9B31m&body=ok', 'author', /C1 control/],
    ['NUL', 'author=Ada&body=a%00b', 'body', /NUL/]
  ]
  for (const [what, payload, field, message] of cases) {
    const res = await post(payload)
    t.equal(res.statusCode, 400, what)
    t.match(res.body, new RegExp(`<p class="field-error" id="comment-${field}-error">[^<]*`), `${what}: the message is beside ${field}`)
    const error = new RegExp(`id="comment-${field}-error">([^<]*)<`).exec(res.body)?.[1] ?? ''
    t.match(error, message, what)
    t.match(res.body, new RegExp(`id="comment-${field}"[^>]*aria-invalid="true"`), `${what}: ${field} is marked invalid`)
  }
  // What was typed comes back, the bad bytes shown as U+FFFD.
  const shown = await post('author=Ada&body=caf%C3%A9%FF%FE')
  t.ok(shown.body.includes('café\ufffd\ufffd</textarea>'), 'the text is re-shown with the bad bytes marked')
  t.equal(hits.length, 0, 'nothing undecodable reached the backend')

  // Well-formed text in every script still goes through (to the backend here).
  const fine = await post('author=Zo%C3%AB+%F0%9F%8E%89&body=line%0D%0Aline')
  t.equal(hits.length, 1, 'valid UTF-8, emoji and newlines are forwarded')
  t.equal(fine.statusCode, 503, 'the fake backend fails, so the form comes back')
})

eachDatabase(t, 'cross-site posts are refused; the client address and a submission key are forwarded', async (t, database) => {
  const seen: Array<{ headers: IncomingMessage['headers'], body: string }> = []
  const fake = createServer((req, res) => {
    let body = ''
    req.on('data', (c) => { body += c })
    req.on('end', () => {
      seen.push({ headers: req.headers, body })
      res.writeHead(201, { 'content-type': 'application/json', 'x-commit-lsn': '0/1' }).end(JSON.stringify({ id: '7', news: 'x' }))
    })
  })
  fake.listen(0, '127.0.0.1')
  await once(fake, 'listening')
  t.teardown(() => { fake.close() })
  const rw = openDatabase(t, database)
  const { app } = await startFrontend(t, database.url, { backendUrls: [`http://127.0.0.1:${(fake.address() as { port: number }).port}`] })
  const article = await rw.db.selectFrom('news').select(['slug']).executeTakeFirstOrThrow()
  const path = `/news/${article.slug}/comments`
  const fields = { author: 'Ada', body: 'Hello' }

  const evil = await app.inject(formPost(path, fields, { origin: 'https://evil.example' }))
  t.equal(evil.statusCode, 403)
  t.match(evil.body, /only be sent from our own pages/)
  t.equal((await app.inject(formPost(path, fields, { origin: '', 'sec-fetch-site': 'cross-site' }))).statusCode, 403)
  const bare = formPost(path, fields)
  delete (bare.headers as Record<string, string>).origin
  t.equal((await app.inject(bare)).statusCode, 403, 'neither Origin nor Sec-Fetch-Site')
  t.equal((await app.inject({ ...formPost(path, fields), headers: { ...formPost(path, fields).headers, 'content-type': 'application/json' }, payload: JSON.stringify(fields) })).statusCode, 415)
  t.equal(seen.length, 0, 'refused posts never reach the backend')

  const sameSite = formPost(path, fields, { 'sec-fetch-site': 'same-origin', 'x-forwarded-for': '203.0.113.7' })
  delete (sameSite.headers as Record<string, string>).origin
  const ok = await app.inject(sameSite)
  t.equal(ok.statusCode, 303)
  t.equal(ok.headers.location, `/news/${article.slug}?rev=0/1#comment-7`)
  t.equal(seen[0].headers['x-forwarded-for'], '203.0.113.7', 'visitor address forwarded (the frontend trusts loopback proxies)')
  t.same(JSON.parse(seen[0].body), { news: article.slug, author: 'Ada', body: 'Hello' })
  t.match(seen[0].headers['idempotency-key'], /^fe-[A-Za-z0-9_-]{43}$/)
  t.notOk(/form_nonce/.test(seen[0].body), 'the form identity is not a field for the backend')

  // One form instance (its nonce) pressed twice: one key. The same words from another instance: another key.
  const instance = browserNonce()
  await app.inject(formPost(path, { author: 'Ada', body: 'Hello again', form_nonce: instance }, { 'x-forwarded-for': '203.0.113.7' }))
  await app.inject(formPost(path, { author: ' Ada ', body: 'Hello again', form_nonce: instance }, { 'x-forwarded-for': '203.0.113.7' }))
  t.equal(seen[2].headers['idempotency-key'], seen[1].headers['idempotency-key'], 'a double click of one form → one key (one write)')
  await app.inject(formPost(path, { author: 'Ada', body: 'Hello again' }, { 'x-forwarded-for': '203.0.113.7' }))
  t.not(seen[3].headers['idempotency-key'], seen[1].headers['idempotency-key'], 'another visitor\'s form with the same words, same address → another key')

  // Pages cached before the nonce existed still post their render stamp: ignored, never forwarded.
  const legacy = await app.inject(formPost(path, { author: 'Grace', body: 'Stamped', form_at: String(Date.now()) }, { 'x-forwarded-for': '203.0.113.8' }))
  t.equal(legacy.statusCode, 303, 'the old stamp is not an unknown field')
  t.same(JSON.parse(seen[4].body), { news: article.slug, author: 'Grace', body: 'Stamped' }, 'and never reaches the backend')
})

eachDatabase(t, 'backend unavailable or refusing: 503/429 with Retry-After, the form kept', async (t, database) => {
  const rw = openDatabase(t, database)
  const article = await rw.db.selectFrom('news').select(['slug']).executeTakeFirstOrThrow()
  const down = await startFrontend(t, database.url, { backendUrls: ['http://127.0.0.1:9', 'http://127.0.0.1:7'] })
  const res = await down.app.inject(formPost(`/news/${article.slug}/comments`, { author: 'Katherine J.', body: 'Keep this text safe' }))
  t.equal(res.statusCode, 503)
  t.equal(res.headers['retry-after'], '10')
  t.equal(res.headers['cache-control'], 'private, no-store')
  t.match(res.body, /could not confirm that this was saved; sending it again saves it once/)
  t.ok(res.body.includes('Keep this text safe</textarea>'), 'the text is still there')
  t.ok(res.body.includes('value="Katherine J."'))

  let mode: 429 | 503 | 400 = 429
  const fake = createServer((req, res) => {
    req.resume()
    req.on('end', () => {
      if (mode === 400) res.writeHead(400, { 'content-type': 'application/json' }).end(JSON.stringify({ error: 'validation', message: 'body must not contain links', field: 'body' }))
      else res.writeHead(mode, { 'content-type': 'application/json', 'retry-after': '17' }).end(JSON.stringify({ error: mode === 429 ? 'rate_limited' : 'unavailable', message: 'no' }))
    })
  })
  fake.listen(0, '127.0.0.1')
  await once(fake, 'listening')
  t.teardown(() => { fake.close() })
  const refusing = await startFrontend(t, database.url, { backendUrls: [`http://127.0.0.1:${(fake.address() as { port: number }).port}`] })
  const limited = await refusing.app.inject(formPost('/events/new'.replace('/new', ''), { organizer: 'A', email: 'a@b.org', school: 'S', country: 'US', city: 'C', expectedParticipants: '3', eventDate: '2026-12-10' }))
  t.equal(limited.statusCode, 429)
  t.equal(limited.headers['retry-after'], '17')
  t.match(limited.body, /try again in 17 seconds/)
  t.ok(limited.body.includes('value="a@b.org"'))
  mode = 503
  const unavailable = await refusing.app.inject(formPost(`/news/${article.slug}/comments`, { author: 'A', body: 'B' }))
  t.equal(unavailable.statusCode, 503)
  t.equal(unavailable.headers['retry-after'], '17')
  mode = 400
  const rejected = await refusing.app.inject(formPost(`/news/${article.slug}/comments`, { author: 'A', body: 'see http://x' }))
  t.equal(rejected.statusCode, 400)
  t.match(rejected.body, /<p class="field-error" id="comment-body-error">Comment must not contain links\.<\/p>/)
})

eachDatabase(t, 'issue 11: a form without its identity (no JavaScript) is confirmed once more, then written once per visitor', async (t, database) => {
  const rw = openDatabase(t, database)
  const bus = new MemoryBus()
  const backend = await startBackend(t, database.url, bus)
  const { app } = await startFrontend(t, database.url, { backendUrls: [backend.url], bus })
  const tutorial = await rw.db.selectFrom('tutorials').select(['id', 'slug']).executeTakeFirstOrThrow()
  const annas = async () => Number((await rw.db.selectFrom('completions').select((eb) => eb.fn.countAll<string>().as('n')).where('tutorial_id', '=', tutorial.id).where('name', '=', 'Anna').executeTakeFirstOrThrow()).n)

  // The cached page: an empty identity for the script to fill, and the script.
  const page = await app.inject({ url: `/tutorials/${tutorial.slug}` })
  t.match(page.headers['cache-control'], /^public/)
  t.match(page.body, /<input type="hidden" name="form_nonce" value="">/, 'the shared page carries no identity of its own')
  const script = /<script src="(\/assets\/form-nonce\.[A-Za-z0-9]{12}\.js)" defer><\/script>/.exec(page.body)?.[1]
  t.ok(script, 'and loads form-nonce.js (external: the CSP forbids inline script)')
  const asset = await app.inject({ url: script! })
  t.equal(asset.statusCode, 200)
  t.match(asset.body, /crypto\.getRandomValues/)

  const done = `/tutorials/${tutorial.slug}/done`
  const pupil = async () => {
    // The script did not run: nothing is written, the form comes back with an identity.
    const first = await app.inject(formPost(done, { name: 'Anna', country: 'DE', form_nonce: '' }))
    t.equal(first.statusCode, 200)
    t.equal(first.headers['cache-control'], 'private, no-store', 'a form with an identity is never shared')
    t.match(first.body, /press the button again/)
    t.match(first.body, /value="Anna"/)
    t.match(first.body, /<option value="DE" selected>/)
    const nonce = /name="form_nonce" value="([A-Za-z0-9_-]{22})"/.exec(first.body)?.[1]
    t.ok(nonce, 'the server made this form an identity')
    // Pressed again — twice, as a double click or the browser re-sending the post.
    const second = await app.inject(formPost(done, { name: 'Anna', country: 'DE', form_nonce: nonce! }))
    const third = await app.inject(formPost(done, { name: 'Anna', country: 'DE', form_nonce: nonce! }))
    t.equal(second.statusCode, 303)
    t.equal(third.statusCode, 303)
    t.equal(String(third.headers.location).split('?')[0], String(second.headers.location).split('?')[0], 'the same certificate')
    return String(second.headers.location).split('?')[0]
  }
  const before = await annas()
  const a = await pupil()
  t.equal(await annas(), before + 1, 'one write for one pupil, however often pressed')
  const b = await pupil()
  t.not(b, a, 'a second pupil without JavaScript gets their own certificate')
  t.equal(await annas(), before + 2)

  const malformed = await app.inject(formPost(done, { name: 'Anna', country: 'DE', form_nonce: 'abc' }))
  t.equal(malformed.statusCode, 200, 'a malformed identity is no identity')
  t.equal(await annas(), before + 2, 'and writes nothing')
  const invalid = await app.inject(formPost(done, { name: '', country: 'DE', form_nonce: '' }))
  t.equal(invalid.statusCode, 400, 'invalid input is still a 400')
  t.match(invalid.body, /name="form_nonce" value="[A-Za-z0-9_-]{22}"/, 'and the corrected form needs no extra step')
})

eachDatabase(t, 'the completion form\'s optional e-mail: the certificate link is queued for that address, or nothing', async (t, database) => {
  const rw = openDatabase(t, database)
  const bus = new MemoryBus()
  const backend = await startBackend(t, database.url, bus)
  const { app } = await startFrontend(t, database.url, { backendUrls: [backend.url], bus })
  const tutorial = await rw.db.selectFrom('tutorials').select(['id', 'slug']).executeTakeFirstOrThrow()
  const done = `/tutorials/${tutorial.slug}/done`
  const queued = async () => (await rw.pool.query('select recipient, payload from mail_messages where kind = \'certificate\' order by id')).rows

  const page = await app.inject({ url: `/tutorials/${tutorial.slug}` })
  t.match(page.body, /<label for="done-email">Email <span class="optional">\(optional\)<\/span><\/label>/, 'the field says it is optional')
  t.match(page.body, /<input id="done-email" name="email" type="email" value="" maxlength="254" autocomplete="email"/, 'and is not required')

  const without = await app.inject(formPost(done, { name: 'No Mail', country: 'SE', email: '' }))
  t.equal(without.statusCode, 303, 'left empty: the certificate as before')
  t.same(await queued(), [], 'and no message')

  const withMail = await app.inject(formPost(done, { name: 'Mail Me', country: 'SE', email: '  Pupil@School.example ' }))
  t.equal(withMail.statusCode, 303)
  const certificate = String(withMail.headers.location).split('?')[0].replace('/certificates/', '')
  t.match(await queued(), [{ recipient: 'pupil@school.example', payload: { certificateId: certificate, name: 'Mail Me' } }], 'the link to that certificate is queued')

  const names = async () => Number((await rw.pool.query('select count(*) as n from completions where name = \'Bad Mail\'')).rows[0].n)
  const bad = await app.inject(formPost(done, { name: 'Bad Mail', country: 'SE', email: 'not an address' }))
  t.equal(bad.statusCode, 400, 'a bad address: the form comes back')
  t.match(bad.body, /id="done-email-error">Enter an email address like name@school\.org, or leave it empty\.</)
  t.match(bad.body, /value="not an address"/, 'with what was typed')
  t.equal(await names(), 0, 'and nothing is written')
  t.equal((await queued()).length, 1)
})
