/**
 * Issue 14, contract defects of the write API: replay bytes, 415 for
 * text/plain, NUL in editor bodies, C1 controls, lone surrogates and
 * duplicated keys — each a 4xx naming the field, with nothing written.
 */
import t from 'tap'
import { request } from 'undici'
import { eachDatabase } from '../helpers/database.js'
import { startBackend, ADMIN_TOKEN } from '../helpers/backend.js'

/** A raw POST/PUT: the exact bytes of the answer, not a parsed copy. */
async function raw (url: string, method: 'POST' | 'PUT', body: string, headers: Record<string, string> = {}) {
  const res = await request(url, { method, headers: { 'content-type': 'application/json', ...headers }, body })
  const bytes = Buffer.from(await res.body.arrayBuffer())
  return { status: res.statusCode, headers: res.headers, bytes, json: JSON.parse(bytes.toString('utf8') || 'null') }
}

eachDatabase(t, 'issue 14: write API contract', async (t, database) => {
  const be = await startBackend(t, database.url)
  const article = await be.database.db.selectFrom('news').select(['id', 'slug']).orderBy('id').executeTakeFirstOrThrow()
  const count = async (table: 'comments' | 'news') => Number((await be.database.db.selectFrom(table).select(be.database.db.fn.countAll<string>().as('n')).executeTakeFirstOrThrow()).n)

  await t.test('an idempotent replay answers with the first answer\'s exact bytes', async (t) => {
    const body = JSON.stringify({ news: article.slug, author: 'Byte for byte', body: 'the same answer, twice' })
    const first = await raw(`${be.url}/v1/comments`, 'POST', body, { 'idempotency-key': 'bytes-1' })
    t.equal(first.status, 201)
    // The answer's own key order (id first) is what jsonb would have changed.
    t.same(Object.keys(first.json), ['id', 'news', 'author', 'body', 'createdAt'])
    const replay = await raw(`${be.url}/v1/comments`, 'POST', body, { 'idempotency-key': 'bytes-1' })
    t.equal(replay.status, 201)
    t.equal(replay.headers['idempotent-replayed'], 'true')
    t.equal(replay.bytes.toString('hex'), first.bytes.toString('hex'), 'identical bytes')
    t.equal(replay.headers['content-type'], first.headers['content-type'])

    const page = JSON.stringify({ title: 'Replayed news', bodyHtml: '<p>Hi</p>', author: 'Editor' })
    const auth = { authorization: `Bearer ${ADMIN_TOKEN}`, 'idempotency-key': 'bytes-2' }
    const put = await raw(`${be.url}/v1/news/replayed-news`, 'PUT', page, auth)
    t.equal(put.status, 201)
    const again = await raw(`${be.url}/v1/news/replayed-news`, 'PUT', page, auth)
    t.equal(again.headers['idempotent-replayed'], 'true')
    t.equal(again.bytes.toString('hex'), put.bytes.toString('hex'), 'an editor answer too')
  })

  await t.test('text/plain and other non-JSON bodies are 415, as documented', async (t) => {
    const before = await count('comments')
    const body = JSON.stringify({ news: article.slug, author: 'a', body: 'b' })
    for (const type of ['text/plain', 'text/plain; charset=utf-8', 'application/octet-stream', 'multipart/form-data; boundary=x']) {
      const res = await raw(`${be.url}/v1/comments`, 'POST', body, { 'content-type': type })
      t.equal(res.status, 415, type)
      t.equal(res.json.error, 'unsupported_media_type', type)
    }
    t.equal(await count('comments'), before)
  })

  await t.test('\\u0000 in an editor body is a 400 naming the field, not a 500', async (t) => {
    const before = await count('news')
    const auth = { authorization: `Bearer ${ADMIN_TOKEN}` }
    const res = await raw(`${be.url}/v1/news/nul-news`, 'PUT', JSON.stringify({ title: 'NUL', bodyHtml: '<p>a\u0000b</p>', author: 'Editor' }), auth)
    t.equal(res.status, 400)
    t.equal(res.json.error, 'validation')
    t.equal(res.json.field, 'bodyHtml')
    t.match(res.json.message, /^bodyHtml must not contain NUL/)
    const tutorial = await raw(`${be.url}/v1/tutorials/nul-tutorial`, 'PUT', JSON.stringify({ title: 'T', summary: 'S', bodyHtml: '\u0000', level: 'beginner', minAge: 8, maxAge: 12, minutes: 60, partner: 'P' }), auth)
    t.equal(tutorial.status, 400)
    t.equal(tutorial.json.field, 'bodyHtml')
    t.equal(await count('news'), before)
  })

  await t.test('C1 controls, lone surrogates and repeated keys: 400 naming the field, nothing written', async (t) => {
    const before = await count('comments')
    const cases: Array<[string, string, RegExp]> = [
      // Escaped and raw C1 (U+0085 NEL, U+009B CSI).
      [`{"news":"${article.slug}","author":"a","body":"x\\u0085y"}`, 'body', /C1 control/],
      [`{"news":"${article.slug}","author":"a\u009b31m","body":"b"}`, 'author', /C1 control/],
      // A high surrogate with no low one, a low one alone, and one in the wrong order.
      [`{"news":"${article.slug}","author":"\\ud800","body":"b"}`, 'author', /lone surrogate/],
      [`{"news":"${article.slug}","author":"a","body":"x\\udc00"}`, 'body', /lone surrogate/],
      [`{"news":"${article.slug}","author":"a","body":"\\udc00\\ud800"}`, 'body', /lone surrogate/],
      // The second "author" used to win silently.
      [`{"news":"${article.slug}","author":"Alice","author":"Mallory","body":"b"}`, 'author', /author appears more than once/],
      [`{"news":"${article.slug}","author":"a","body":"b","body":"b"}`, 'body', /body appears more than once/],
      // Spelled differently, the same key.
      [`{"news":"${article.slug}","author":"a","\\u0062ody":"b","body":"c"}`, 'body', /more than once/]
    ]
    for (const [body, field, message] of cases) {
      const res = await raw(`${be.url}/v1/comments`, 'POST', body)
      // Labels without raw control characters: they would reach the terminal.
      const label = body.replace(/[^\x20-\x7e]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`).replace(article.slug, '…')
      t.equal(res.status, 400, label)
      t.equal(res.json.error, 'validation', label)
      t.equal(res.json.field, field, label)
      t.match(res.json.message, message, label)
    }
    t.equal(await count('comments'), before)
    // Characters that are fine: a surrogate pair, accents, a newline in a comment.
    const ok = await raw(`${be.url}/v1/comments`, 'POST', JSON.stringify({ news: article.slug, author: 'Zoë 🎉', body: 'line\nline \\ud83c\\udf89' }))
    t.equal(ok.status, 201)
    t.equal(ok.json.author, 'Zoë 🎉')
    const escapedPair = await raw(`${be.url}/v1/comments`, 'POST', `{"news":"${article.slug}","author":"\\ud83c\\udf89","body":"b"}`)
    t.equal(escapedPair.status, 201)
    t.equal(escapedPair.json.author, '🎉')
  })

  await t.test('bad JSON is still a 400 without a field', async (t) => {
    for (const body of ['{"news":', '{"a":1}x', '{"a":01}', '{"a":"\\x"}', '[' .repeat(100) + ']'.repeat(100)]) {
      const res = await raw(`${be.url}/v1/comments`, 'POST', body)
      t.equal(res.status, 400, body.slice(0, 30))
      t.equal(res.json.field, undefined)
    }
  })
})
