import t from 'tap'
import { eachDatabase } from '../../helpers/database.js'
import { startBackend, eventually, ADMIN_TOKEN } from '../../helpers/backend.js'

const article = { title: 'Hour of Code 2026 is here', bodyHtml: '<p>Join <strong>millions</strong> of students.</p>', author: 'Editor' }
const tutorial = { title: 'Robot Garden', summary: 'Grow a garden with code', bodyHtml: '<p>Plant, water, repeat.</p>', level: 'beginner', minAge: 6, maxAge: 10, minutes: 60, partner: 'flashcrowd' }

async function put (url: string, body: unknown, token?: string) {
  const res = await fetch(url, { method: 'PUT', headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) }, body: JSON.stringify(body) })
  return { status: res.status, json: await res.json() as any }
}

eachDatabase(t, 'editor API', async (t, database) => {
  const be = await startBackend(t, database.url)
  const newsCount = async () => Number((await be.database.db.selectFrom('news').select(be.database.db.fn.countAll<string>().as('n')).executeTakeFirstOrThrow()).n)

  await t.test('401 without credentials, 403 with wrong ones; nothing changes', async (t) => {
    const before = await newsCount()
    t.equal((await put(`${be.url}/v1/news/launch-day`, article)).status, 401)
    t.equal((await put(`${be.url}/v1/news/launch-day`, article, 'wrong-token-wrong-token')).status, 403)
    const basic = await fetch(`${be.url}/v1/news/launch-day`, { method: 'PUT', headers: { 'content-type': 'application/json', authorization: 'Basic YWRtaW46YWRtaW4=' }, body: JSON.stringify(article) })
    t.equal(basic.status, 401)
    t.equal(await newsCount(), before)
  })

  await t.test('publish (201), update (200), purging exactly its pages', async (t) => {
    const created = await put(`${be.url}/v1/news/launch-day`, article, ADMIN_TOKEN)
    t.equal(created.status, 201)
    t.match(created.json, { slug: 'launch-day', url: '/news/launch-day' })
    const id = created.json.id
    t.ok(await eventually(() => be.messages.some((m) => m.event.kind === 'keys' && m.event.keys.includes(`news:${id}`))))
    const keys = be.messages.flatMap((m) => m.event.kind === 'keys' ? m.event.keys : [])
    t.ok(['news', 'home', 'sitemap'].every((k) => keys.includes(k)))
    const updated = await put(`${be.url}/v1/news/launch-day`, { ...article, title: 'Updated title' }, ADMIN_TOKEN)
    t.equal(updated.status, 200)
    t.equal(updated.json.id, id)
    t.equal(updated.json.publishedAt, created.json.publishedAt, 'an update keeps the publication time')
    const moved = await put(`${be.url}/v1/news/launch-day`, { ...article, title: 'Updated title', publishedAt: '2026-12-07T09:00:00Z' }, ADMIN_TOKEN)
    t.equal(new Date(moved.json.publishedAt).toISOString(), '2026-12-07T09:00:00.000Z', 'unless a new one is given')
    const row = await be.database.db.selectFrom('news').select(['title', 'summary']).where('slug', '=', 'launch-day').executeTakeFirstOrThrow()
    t.equal(row.title, 'Updated title')
    t.equal(row.summary, 'Join millions of students.')
  })

  await t.test('tutorials too, with their own keys', async (t) => {
    const res = await put(`${be.url}/v1/tutorials/robot-garden`, tutorial, ADMIN_TOKEN)
    t.equal(res.status, 201)
    t.ok(await eventually(() => be.messages.some((m) => m.event.kind === 'keys' && m.event.keys.includes(`tutorial:${res.json.id}`) && m.event.keys.includes('tutorials'))))
    const bad = await put(`${be.url}/v1/tutorials/robot-garden`, { ...tutorial, minAge: 12, maxAge: 8 }, ADMIN_TOKEN)
    t.equal(bad.status, 400)
    t.equal(bad.json.field, 'maxAge')
  })

  await t.test('script in editor HTML is refused', async (t) => {
    for (const html of ['<p>hi</p><script>alert(1)</script>', '<img src=x onerror=alert(1)>', '<a href="javascript:alert(1)">x</a>', '<svg><script>1</script></svg>', '<img/onerror=alert(1) src=x>', '<a href="&#106;avascript:alert(1)">x</a>', '<a href="jav&#x09;ascript:alert(1)">x</a>', '<a href=" java script:alert(1)">x</a>', '<a href="javascript&colon;alert(1)">x</a>']) {
      const res = await put(`${be.url}/v1/news/evil`, { ...article, bodyHtml: html }, ADMIN_TOKEN)
      t.equal(res.status, 400, html)
      t.equal(res.json.field, 'bodyHtml')
    }
    t.equal((await be.database.db.selectFrom('news').select('id').where('slug', '=', 'evil').execute()).length, 0)
    const badSlug = await put(`${be.url}/v1/news/Not%20A%20Slug`, article, ADMIN_TOKEN)
    t.equal(badSlug.status, 400)
  })
})
