import t from 'tap'
import { sql } from 'kysely'
import { eachDatabase } from '../helpers/database.js'
import { startBackend } from '../helpers/backend.js'
import { parseIdempotencyKey, requestHash } from '../../backend/idempotency.js'

t.test('request hashes ignore key order but not content', async (t) => {
  t.equal(requestHash('POST', '/v1/comments', { a: 1, b: [1, { c: 2, d: 3 }] }), requestHash('POST', '/v1/comments', { b: [1, { d: 3, c: 2 }], a: 1 }))
  t.not(requestHash('POST', '/v1/comments', { a: 1 }), requestHash('POST', '/v1/comments', { a: 2 }))
  t.not(requestHash('POST', '/v1/comments', { a: 1 }), requestHash('POST', '/v1/events', { a: 1 }))
  t.equal(parseIdempotencyKey(undefined), undefined)
  t.equal(parseIdempotencyKey(' abc-123 '), 'abc-123')
  t.throws(() => parseIdempotencyKey('has space'))
  t.throws(() => parseIdempotencyKey(['a', 'b']))
  t.throws(() => parseIdempotencyKey('x'.repeat(256)))
})

eachDatabase(t, 'Idempotency-Key', async (t, database) => {
  const be = await startBackend(t, database.url)
  const article = await be.database.db.selectFrom('news').select(['id', 'slug']).orderBy('id').executeTakeFirstOrThrow()
  const comments = async (author: string) => (await be.database.db.selectFrom('comments').select('id').where('author', '=', author).execute()).length

  await t.test('a replay returns the first answer, marked, and writes nothing', async (t) => {
    const body = { news: article.slug, author: 'Replay', body: 'once' }
    const first = await be.post('/v1/comments', body, { 'idempotency-key': 'k-replay' })
    t.equal(first.status, 201)
    t.equal(first.headers.get('idempotent-replayed'), null)
    const second = await be.post('/v1/comments', body, { 'idempotency-key': 'k-replay' })
    t.equal(second.status, 201)
    t.equal(second.headers.get('idempotent-replayed'), 'true')
    t.same(second.json, first.json)
    t.equal(await comments('Replay'), 1)
    // The browser of a double click follows the replay: it must carry a position too.
    t.match(first.headers.get('x-commit-lsn'), /^[0-9A-F]+\/[0-9A-F]+$/)
    t.match(second.headers.get('x-commit-lsn'), /^[0-9A-F]+\/[0-9A-F]+$/, 'a replay carries the commit position')
  })

  await t.test('the same key with another body is 409 and writes nothing', async (t) => {
    await be.post('/v1/comments', { news: article.slug, author: 'Mismatch', body: 'one' }, { 'idempotency-key': 'k-mismatch' })
    const res = await be.post('/v1/comments', { news: article.slug, author: 'Mismatch', body: 'two' }, { 'idempotency-key': 'k-mismatch' })
    t.equal(res.status, 409)
    t.equal(res.json.error, 'conflict')
    t.equal(await comments('Mismatch'), 1)
    const otherRoute = await be.post('/v1/completions', { tutorial: 'x', name: 'n', country: 'US' }, { 'idempotency-key': 'k-mismatch' })
    t.equal(otherRoute.status, 409, 'a key is bound to its route too')
  })

  await t.test('50 simultaneous requests with one key make one row', async (t) => {
    const body = { news: article.slug, author: 'Stampede', body: 'all at once' }
    const results = await Promise.all(Array.from({ length: 50 }, () => be.post('/v1/comments', body, { 'idempotency-key': 'k-stampede' })))
    t.ok(results.every((r) => r.status === 201), `statuses: ${[...new Set(results.map((r) => r.status))]}`)
    t.equal(new Set(results.map((r) => r.json.id)).size, 1, 'every answer names the same comment')
    t.equal(results.filter((r) => r.headers.get('idempotent-replayed') !== 'true').length, 1, 'exactly one did the write')
    t.equal(await comments('Stampede'), 1)
  })

  await t.test('a failed write does not burn the key', async (t) => {
    const missing = await be.post('/v1/comments', { news: 'no-such-article', author: 'Retry', body: 'x' }, { 'idempotency-key': 'k-failed' })
    t.equal(missing.status, 404)
    const row = await be.database.db.selectFrom('idempotency_keys').select('key').where('key', '=', 'k-failed').executeTakeFirst()
    t.equal(row, undefined)
  })

  await t.test('an expired key is taken over by a new write', async (t) => {
    const body = { news: article.slug, author: 'Expiry', body: 'again' }
    await be.post('/v1/comments', body, { 'idempotency-key': 'k-expiry' })
    await sql`update idempotency_keys set expires_at = now() - interval '1 second' where key = 'k-expiry'`.execute(be.database.db)
    const again = await be.post('/v1/comments', body, { 'idempotency-key': 'k-expiry' })
    t.equal(again.status, 201)
    t.equal(again.headers.get('idempotent-replayed'), null)
    t.equal(await comments('Expiry'), 2)
    const { sweepIdempotencyKeys } = await import('../../backend/idempotency.js')
    await sql`update idempotency_keys set expires_at = now() - interval '1 second' where key = 'k-expiry'`.execute(be.database.db)
    t.ok(await sweepIdempotencyKeys(be.database.db) >= 1)
  })

  await t.test('a malformed key is a 400', async (t) => {
    const res = await be.post('/v1/comments', { news: article.slug, author: 'a', body: 'b' }, { 'idempotency-key': 'with space' })
    t.equal(res.status, 400)
  })
})
