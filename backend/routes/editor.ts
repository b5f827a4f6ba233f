/**
 * The editor API: publish or update news and tutorials (Bearer ADMIN_TOKEN).
 * Each publish purges exactly the pages that show the item.
 */
import type { FastifyInstance } from 'fastify'
import { sql } from 'kysely'
import { SurrogateKeys } from '../../common/surrogate-keys.js'
import { requireEditor } from '../auth.js'
import { NewsBody, SlugParams, TutorialBody, unsafeHtmlReason, type NewsInput, type TutorialInput } from '../schemas.js'
import { fieldError } from './events.js'

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
      const published = input.publishedAt ? new Date(input.publishedAt) : new Date()
      const row = await trx.insertInto('news').values({
        slug, title: input.title.trim(), summary: input.summary?.trim() ?? summarize(input.bodyHtml), body_html: input.bodyHtml,
        author: input.author.trim(), published_at: published, updated_at: sql<Date>`now()`
      }).onConflict((oc) => oc.column('slug').doUpdateSet((eb) => ({
        title: eb.ref('excluded.title'), summary: eb.ref('excluded.summary'), body_html: eb.ref('excluded.body_html'),
        author: eb.ref('excluded.author'), updated_at: sql<Date>`now()`,
        published_at: input.publishedAt ? eb.ref('excluded.published_at') : eb.ref('news.published_at')
      }))).returning(['id', 'slug', 'title', 'published_at', 'updated_at', sql<boolean>`xmax = 0`.as('inserted')]).executeTakeFirstOrThrow()
      return {
        status: row.inserted ? 201 : 200,
        body: { id: row.id, slug: row.slug, title: row.title, publishedAt: row.published_at, updatedAt: row.updated_at, url: `/news/${row.slug}` },
        keys: [SurrogateKeys.news, SurrogateKeys.article(row.id), SurrogateKeys.home, SurrogateKeys.sitemap]
      }
    })
  })

  app.put('/v1/tutorials/:slug', { onRequest, schema: { params: SlugParams, body: TutorialBody } }, async (request, reply) => {
    const { slug } = request.params as { slug: string }
    const input = request.body as TutorialInput
    const unsafe = unsafeHtmlReason(input.bodyHtml)
    if (unsafe) throw fieldError('bodyHtml', unsafe)
    if (input.maxAge < input.minAge) throw fieldError('maxAge', 'must not be below minAge')
    return app.writer.run(request, reply, async (trx) => {
      const published = input.publishedAt ? new Date(input.publishedAt) : new Date()
      const row = await trx.insertInto('tutorials').values({
        slug, title: input.title.trim(), summary: input.summary.trim(), body_html: input.bodyHtml, level: input.level,
        min_age: input.minAge, max_age: input.maxAge, minutes: input.minutes, partner: input.partner.trim(),
        published_at: published, updated_at: sql<Date>`now()`
      }).onConflict((oc) => oc.column('slug').doUpdateSet((eb) => ({
        title: eb.ref('excluded.title'), summary: eb.ref('excluded.summary'), body_html: eb.ref('excluded.body_html'),
        level: eb.ref('excluded.level'), min_age: eb.ref('excluded.min_age'), max_age: eb.ref('excluded.max_age'),
        minutes: eb.ref('excluded.minutes'), partner: eb.ref('excluded.partner'), updated_at: sql<Date>`now()`,
        published_at: input.publishedAt ? eb.ref('excluded.published_at') : eb.ref('tutorials.published_at')
      }))).returning(['id', 'slug', 'title', 'published_at', 'updated_at', sql<boolean>`xmax = 0`.as('inserted')]).executeTakeFirstOrThrow()
      return {
        status: row.inserted ? 201 : 200,
        body: { id: row.id, slug: row.slug, title: row.title, publishedAt: row.published_at, updatedAt: row.updated_at, url: `/tutorials/${row.slug}` },
        keys: [SurrogateKeys.tutorials, SurrogateKeys.tutorial(row.id), SurrogateKeys.home, SurrogateKeys.sitemap]
      }
    })
  })
}
