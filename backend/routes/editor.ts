/**
 * The editor API: publish or update news and tutorials (Bearer ADMIN_TOKEN).
 * Each publish purges exactly the pages that show the item.
 */
import type { FastifyInstance } from 'fastify'
import { sql, type Kysely, type Transaction } from 'kysely'
import type { Database } from '../../common/db-types.js'
import { SurrogateKeys } from '../../common/surrogate-keys.js'
import { requireEditor } from '../auth.js'
import { NewsBody, SlugParams, TutorialBody, unsafeHtmlReason, type NewsInput, type TutorialInput } from '../schemas.js'
import { fieldError } from '../field-error.js'

function summarize (html: string): string {
  const text = html.replace(/<[^>]*>/g, ' ').replace(/&[a-z#0-9]+;/gi, ' ').replace(/\s+/g, ' ').trim()
  return text.length > 200 ? `${text.slice(0, 197)}…` : text
}

export default async function editorRoutes (app: FastifyInstance, opts: { adminToken?: string }): Promise<void> {
  const onRequest = requireEditor(opts.adminToken)

  app.put('/v1/news/:slug', { onRequest, schema: { params: SlugParams, body: NewsBody } }, async (request, reply) => {
    const { slug } = request.params as { slug: string }
    const input = request.body as NewsInput
    const unsafe = unsafeHtmlReason(input.bodyHtml)
    if (unsafe) throw fieldError('bodyHtml', unsafe)
    return app.writer.run(request, reply, async (trx) => {
      const row = await publish(trx, 'news', slug, {
        title: input.title.trim(), summary: input.summary?.trim() ?? summarize(input.bodyHtml), body_html: input.bodyHtml, author: input.author.trim()
      }, input.publishedAt)
      return answer(row, `/news/${row.slug}`, [SurrogateKeys.news, SurrogateKeys.article(row.id), SurrogateKeys.home, SurrogateKeys.sitemap])
    })
  })

  app.put('/v1/tutorials/:slug', { onRequest, schema: { params: SlugParams, body: TutorialBody } }, async (request, reply) => {
    const { slug } = request.params as { slug: string }
    const input = request.body as TutorialInput
    const unsafe = unsafeHtmlReason(input.bodyHtml)
    if (unsafe) throw fieldError('bodyHtml', unsafe)
    if (input.maxAge < input.minAge) throw fieldError('maxAge', 'must not be below minAge')
    return app.writer.run(request, reply, async (trx) => {
      const row = await publish(trx, 'tutorials', slug, {
        title: input.title.trim(), summary: input.summary.trim(), body_html: input.bodyHtml, level: input.level,
        min_age: input.minAge, max_age: input.maxAge, minutes: input.minutes, partner: input.partner.trim()
      }, input.publishedAt)
      return answer(row, `/tutorials/${row.slug}`, [SurrogateKeys.tutorials, SurrogateKeys.tutorial(row.id), SurrogateKeys.home, SurrogateKeys.sitemap])
    })
  })
}

interface Published { id: number, slug: string, title: string, published_at: Date, updated_at: Date, inserted: boolean }

/**
 * Creates or updates a news article or tutorial by slug. An update replaces
 * the given content columns and keeps the original publication time unless a
 * new one is given.
 */
async function publish (trx: Transaction<Database>, table: 'news' | 'tutorials', slug: string, content: Record<string, string | number>, publishedAt: string | undefined): Promise<Published> {
  // The column set differs per table; the statement's shape does not.
  const db = trx as unknown as Kysely<any>
  return db.insertInto(table)
    .values({ slug, ...content, published_at: publishedAt ? new Date(publishedAt) : new Date(), updated_at: sql`now()` })
    .onConflict((oc) => oc.column('slug').doUpdateSet((eb) => ({
      ...Object.fromEntries(Object.keys(content).map((column) => [column, eb.ref(`excluded.${column}`)])),
      updated_at: sql`now()`,
      published_at: publishedAt ? eb.ref('excluded.published_at') : eb.ref(`${table}.published_at`)
    })))
    .returning(['id', 'slug', 'title', 'published_at', 'updated_at', sql<boolean>`xmax = 0`.as('inserted')])
    .executeTakeFirstOrThrow() as Promise<Published>
}

function answer (row: Published, url: string, keys: string[]) {
  return {
    status: row.inserted ? 201 : 200,
    body: { id: row.id, slug: row.slug, title: row.title, publishedAt: row.published_at, updatedAt: row.updated_at, url },
    keys
  }
}
