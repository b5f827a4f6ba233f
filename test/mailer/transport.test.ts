/** The transports: SMTP with TLS and auth from SMTP_URL, and the .eml folder of the one-machine tier. */
import t from 'tap'
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { emlFileName, folderTransport, smtpTransport, type OutgoingMessage } from '../../mailer/transport.js'
import { classify } from '../../mailer/sender.js'
import { headerOf, startSmtp } from './helpers.js'

const message = (over: Partial<OutgoingMessage> = {}): OutgoingMessage => ({
  messageId: '<3f1c2a9e-1111-4222-8333-444455556666@hoc.example>',
  from: 'Hour of Code <hello@hoc.example>',
  to: 'pupil@school.example',
  subject: 'Subject',
  text: 'text part',
  html: '<p>html part</p>',
  date: new Date('2026-12-08T10:00:00Z'),
  ...over
})

t.test('smtps:// with the user and password of the URL; an unverifiable certificate is refused unless allowed', async (t) => {
  const logins: string[] = []
  const smtp = await startSmtp(t, {
    server: {
      secure: true, // TLS from the first byte, with smtp-server's own self-signed certificate
      authOptional: false,
      disabledCommands: [],
      onAuth (auth, _session, callback) {
        logins.push(`${auth.username}:${auth.password}`)
        if (auth.username === 'mailer@hoc.example' && auth.password === 'p@ss/word') return callback(null, { user: auth.username })
        callback(Object.assign(new Error('5.7.8 Authentication failed'), { responseCode: 535 }))
      }
    }
  })
  const url = `smtps://${encodeURIComponent('mailer@hoc.example')}:${encodeURIComponent('p@ss/word')}@127.0.0.1:${smtp.port}`
  const strict = smtpTransport({ url, rejectUnauthorized: true, requireTLS: false, poolSize: 1, timeoutMs: 10_000 })
  t.teardown(() => strict.close())
  const refused = await strict.send(message()).then(() => undefined, (err: unknown) => err)
  t.ok(refused, 'a self-signed certificate is refused by default')
  t.equal(classify(refused), 'temporary', 'kept for later: the operator fixes the setting')
  t.equal(smtp.accepted.length, 0)

  const relaxed = smtpTransport({ url, rejectUnauthorized: false, requireTLS: false, poolSize: 1, timeoutMs: 10_000 })
  t.teardown(() => relaxed.close())
  t.equal(relaxed.description, `smtps://mailer@hoc.example@127.0.0.1:${smtp.port}`, 'the description never holds the password')
  await relaxed.send(message())
  t.same(logins, ['mailer@hoc.example:p@ss/word'], 'logged in with the decoded user and password')
  t.equal(smtp.accepted.length, 1)

  const wrong = smtpTransport({ url: url.replace('p%40ss', 'nope'), rejectUnauthorized: false, requireTLS: false, poolSize: 1, timeoutMs: 10_000 })
  t.teardown(() => wrong.close())
  const denied = await wrong.send(message()).then(() => undefined, (err: unknown) => err)
  t.match(denied, { code: 'EAUTH' })
  t.equal(classify(denied), 'temporary', 'a refused login does not fail the message for good')
})

t.test('MAILER_SMTP_REQUIRE_TLS: no STARTTLS, no message', async (t) => {
  const smtp = await startSmtp(t)
  const transport = smtpTransport({ url: smtp.url, rejectUnauthorized: true, requireTLS: true, poolSize: 1, timeoutMs: 10_000 })
  t.teardown(() => transport.close())
  await t.rejects(transport.send(message()))
  t.equal(smtp.attempts.length, 0, 'nothing was sent in the clear')
})

t.test('the folder: one .eml file per Message-ID, a resend overwrites it', async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'fc-eml-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const folder = folderTransport(path.join(dir, 'mail'))
  t.equal(folder.kind, 'folder')
  await folder.send(message())
  await folder.send(message())
  await folder.send(message({ messageId: '<other@hoc.example>', to: 'x@y.example' }))
  const files = (await readdir(path.join(dir, 'mail'))).sort()
  t.same(files, ['3f1c2a9e-1111-4222-8333-444455556666@hoc.example.eml', 'other@hoc.example.eml'])
  const raw = await readFile(path.join(dir, 'mail', files[0]), 'utf8')
  t.equal(headerOf(raw, 'Message-ID'), '<3f1c2a9e-1111-4222-8333-444455556666@hoc.example>')
  t.equal(headerOf(raw, 'To'), 'pupil@school.example')
  t.match(raw, /text part/)
  t.match(raw, /<p>html part<\/p>/)
  t.equal(emlFileName('<a/../b c@x>'), 'a_.._b_c@x.eml', 'a Message-ID never names a path outside the folder')
})
