import t from 'tap'
import { eachDatabase } from '../../helpers/database.js'
import { startBackend, eventually } from '../../helpers/backend.js'

eachDatabase(t, 'POST /v1/comments', async (t, database) => {
  const be = await startBackend(t, database.url)
  const article = await be.database.db.selectFrom('news').select(['id', 'slug']).orderBy('id').executeTakeFirstOrThrow()
  const count = async () => Number((await be.database.db.selectFrom('comments').select(be.database.db.fn.countAll<string>().as('n')).executeTakeFirstOrThrow()).n)
  const initial = await count()

  await t.test('201 with the stored comment, then an invalidation naming the article', async (t) => {
    const res = await be.post('/v1/comments', { news: article.slug, author: ' Ada ', body: 'Loved it' })
    t.equal(res.status, 201)
    t.match(res.json, { news: article.slug, author: 'Ada', body: 'Loved it' })
    t.ok(res.json.id)
    t.equal(res.headers.get('cache-control'), 'no-store')
    t.ok(await eventually(() => be.messages.some((m) => m.event.kind === 'keys' && m.event.keys.includes(`news:${article.id}`))), 'bus event with news:<id>')
    t.equal(await count(), initial + 1)
  })

  await t.test('404 for an unknown article, nothing written', async (t) => {
    const before = await count()
    const res = await be.post('/v1/comments', { news: 'no-such-article', author: 'a', body: 'b' })
    t.equal(res.status, 404)
    t.equal(res.json.error, 'not_found')
    t.equal(await count(), before)
  })

  await t.test('400 naming the field; nothing written', async (t) => {
    const before = await count()
    const cases: Array<[unknown, string]> = [
      [{ news: article.slug, author: 'x'.repeat(81), body: 'b' }, 'author'],
      [{ news: article.slug, author: 'a' }, 'body'],
      [{ news: article.slug, author: 'a', body: 'b', admin: true }, 'admin'],
      [{ news: article.slug, author: 42, body: 'b' }, 'author'],
      [{ news: article.slug, author: '   ', body: 'b' }, 'author'],
      [{ news: article.slug, author: 'a\u0000b', body: 'b' }, 'author'],
      [{ news: 'Bad Slug!', author: 'a', body: 'b' }, 'news']
    ]
    for (const [body, field] of cases) {
      const res = await be.post('/v1/comments', body)
      t.equal(res.status, 400, `${JSON.stringify(body).slice(0, 60)} → 400`)
      t.equal(res.json.error, 'validation')
      t.equal(res.json.field, field)
      t.match(res.json.message, field)
    }
    t.equal(await count(), before)
  })

  await t.test('malformed bodies: 400 (bad JSON, invalid UTF-8, prototype poisoning), 415, 413', async (t) => {
    const before = await count()
    t.equal((await be.post('/v1/comments', '{"news":')).status, 400)
    const invalidUtf8 = Buffer.concat([Buffer.from(`{"news":"${article.slug}","author":"`), Buffer.from([0xc3, 0x28]), Buffer.from('","body":"b"}')])
    const bad = await be.post('/v1/comments', invalidUtf8)
    t.equal(bad.status, 400)
    t.match(bad.json.message, /UTF-8/)
    t.equal((await be.post('/v1/comments', `{"news":"${article.slug}","author":"a","body":"b","__proto__":{"x":1}}`)).status, 400)
    const text = await be.post('/v1/comments', 'news=x', { 'content-type': 'application/x-www-form-urlencoded' })
    t.equal(text.status, 415)
    t.equal(text.json.error, 'unsupported_media_type')
    const latin1 = await be.post('/v1/comments', { news: article.slug, author: 'a', body: 'b' }, { 'content-type': 'application/json; charset=iso-8859-1' })
    t.equal(latin1.status, 415)
    const big = await be.post('/v1/comments', { news: article.slug, author: 'a', body: 'x'.repeat(1024 * 1024 + 10) })
    t.equal(big.status, 413)
    t.equal(big.json.error, 'payload_too_large')
    t.equal(await count(), before)
  })

  await t.test('SQL and HTML payloads are stored as text, harmlessly', async (t) => {
    const body = "'); drop table comments; -- <script>alert(1)</script>"
    const res = await be.post('/v1/comments', { news: article.slug, author: "Robert'); --", body })
    t.equal(res.status, 201)
    const row = await be.database.db.selectFrom('comments').select('body').where('id', '=', res.json.id).executeTakeFirstOrThrow()
    t.equal(row.body, body)
  })

  await t.test('unknown routes and methods answer JSON 404', async (t) => {
    const res = await be.post('/v1/nothing', {})
    t.equal(res.status, 404)
    t.equal(res.json.error, 'not_found')
  })
})
