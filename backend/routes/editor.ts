/**
 * The editor API: publish or update news and tutorials (Bearer ADMIN_TOKEN).
 * Each publish purges exactly the pages that show the item.
 */
import type { FastifyInstance } from 'fastify'
import { SurrogateKeys } from '../../common/surrogate-keys.js'
import { requireEditor } from '../auth.js'
import { NewsBody, SlugParams, TutorialBody, unsafeHtmlReason, type NewsInput, type TutorialInput } from '../schemas.js'
import { fieldError } from '../field-error.js'
import type { Queryable, WriteAnswer, WriteKind } from '../write-kind.js'

function summarize (html: string): string {
  const text = html.replace(/<[^>]*>/g, ' ').replace(/&[a-z#0-9]+;/gi, ' ').replace(/\s+/g, ' ').trim()
  return text.length > 200 ? `${text.slice(0, 197)}…` : text
}

// Create or update by slug. An update replaces the content columns and keeps
// the original publication time unless a new one is given ($n::timestamptz null).
const UPSERT_NEWS = `
  insert into news (slug, title, summary, body_html, author, published_at, updated_at)
  values ($1, $2, $3, $4, $5, coalesce($6::timestamptz, now()), now())
  on conflict (slug) do update set
    title = excluded.title, summary = excluded.summary, body_html = excluded.body_html, author = excluded.author,
    updated_at = now(), published_at = coalesce($6::timestamptz, news.published_at)
  returning id, slug, title, published_at, updated_at, (xmax = 0) as inserted`

const UPSERT_TUTORIAL = `
  insert into tutorials (slug, title, summary, body_html, level, min_age, max_age, minutes, partner, published_at, updated_at)
  values ($1, $2, $3, $4, $5, $6, $7, $8, $9, coalesce($10::timestamptz, now()), now())
  on conflict (slug) do update set
    title = excluded.title, summary = excluded.summary, body_html = excluded.body_html, level = excluded.level,
    min_age = excluded.min_age, max_age = excluded.max_age, minutes = excluded.minutes, partner = excluded.partner,
    updated_at = now(), published_at = coalesce($10::timestamptz, tutorials.published_at)
  returning id, slug, title, published_at, updated_at, (xmax = 0) as inserted`

interface Published { id: number, slug: string, title: string, published_at: Date, updated_at: Date, inserted: boolean }

type NewsWrite = NewsInput & { slug: string }
type TutorialWrite = TutorialInput & { slug: string }

/** Editor writes are rare: one statement each, in order (the same slug twice in a batch is an insert, then an update). */
async function eachInOrder<I> (db: Queryable, inputs: I[], one: (db: Queryable, input: I) => Promise<WriteAnswer>): Promise<WriteAnswer[]> {
  const answers: WriteAnswer[] = []
  for (const input of inputs) answers.push(await one(db, input))
  return answers
}

export const newsWrites: WriteKind<NewsWrite> = {
  name: 'news',
  execute: (db, inputs) => eachInOrder(db, inputs, async (db, input) => {
    const res = await db.query<Published>(UPSERT_NEWS, [
      input.slug, input.title.trim(), input.summary?.trim() ?? summarize(input.bodyHtml), input.bodyHtml, input.author.trim(), input.publishedAt ?? null
    ])
    const row = res.rows[0]
    return answer(row, `/news/${row.slug}`, [SurrogateKeys.news, SurrogateKeys.article(row.id), SurrogateKeys.home, SurrogateKeys.sitemap])
  })
}

export const tutorialWrites: WriteKind<TutorialWrite> = {
  name: 'tutorial',
  execute: (db, inputs) => eachInOrder(db, inputs, async (db, input) => {
    const res = await db.query<Published>(UPSERT_TUTORIAL, [
      input.slug, input.title.trim(), input.summary.trim(), input.bodyHtml, input.level,
      input.minAge, input.maxAge, input.minutes, input.partner.trim(), input.publishedAt ?? null
    ])
    const row = res.rows[0]
    return answer(row, `/tutorials/${row.slug}`, [SurrogateKeys.tutorials, SurrogateKeys.tutorial(row.id), SurrogateKeys.home, SurrogateKeys.sitemap])
  })
}

export default async function editorRoutes (app: FastifyInstance, opts: { adminToken?: string }): Promise<void> {
  const onRequest = requireEditor(opts.adminToken)

  app.put('/v1/news/:slug', { onRequest, schema: { params: SlugParams, body: NewsBody } }, async (request, reply) => {
    const { slug } = request.params as { slug: string }
    const input = request.body as NewsInput
    const unsafe = unsafeHtmlReason(input.bodyHtml)
    if (unsafe) throw fieldError('bodyHtml', unsafe)
    return app.writer.run(request, reply, newsWrites, { ...input, slug })
  })

  app.put('/v1/tutorials/:slug', { onRequest, schema: { params: SlugParams, body: TutorialBody } }, async (request, reply) => {
    const { slug } = request.params as { slug: string }
    const input = request.body as TutorialInput
    const unsafe = unsafeHtmlReason(input.bodyHtml)
    if (unsafe) throw fieldError('bodyHtml', unsafe)
    if (input.maxAge < input.minAge) throw fieldError('maxAge', 'must not be below minAge')
    return app.writer.run(request, reply, tutorialWrites, { ...input, slug })
  })
}

function answer (row: Published, url: string, keys: string[]): WriteAnswer {
  return {
    status: row.inserted ? 201 : 200,
    body: { id: row.id, slug: row.slug, title: row.title, publishedAt: row.published_at, updatedAt: row.updated_at, url },
    keys
  }
}
