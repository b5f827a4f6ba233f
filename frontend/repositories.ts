/**
 * Everything the pages read, as one repository built by a factory over the
 * read-only pool. Nothing here writes: the handle is read-only (design §2.1),
 * and the queries are plain SELECTs so a SELECT-only role is enough.
 */
import { sql, type Kysely } from 'kysely'
import { readCounter, PARTICIPANTS } from '../common/counters.js'
import type { Database } from '../common/db-types.js'

export type Level = 'beginner' | 'intermediate' | 'advanced'
export const LEVELS: readonly Level[] = ['beginner', 'intermediate', 'advanced']

export interface TutorialCard {
  id: number, slug: string, title: string, summary: string, level: Level
  minAge: number, maxAge: number, minutes: number, partner: string, updatedAt: Date
}
export interface Tutorial extends TutorialCard { bodyHtml: string, publishedAt: Date }
export interface ArticleCard { id: number, slug: string, title: string, summary: string, author: string, publishedAt: Date, updatedAt: Date }
export interface Article extends ArticleCard { bodyHtml: string }
export interface CommentView { id: string, author: string, body: string, createdAt: Date }
export interface CountryCount { country: string, events: number, participants: number }
export interface EventView { id: string, school: string, city: string, country: string, expectedParticipants: number, eventDate: string }
export interface Certificate { id: string, name: string, country: string, createdAt: Date, tutorialId: number, tutorialSlug: string, tutorialTitle: string }
export interface Page<T> { items: T[], total: number }
export interface TutorialFilter { level?: Level, age?: number, length?: number }
export interface SitemapEntry { path: string, updatedAt?: Date }

const tutorialCardColumns = ['id', 'slug', 'title', 'summary', 'level', 'min_age', 'max_age', 'minutes', 'partner', 'updated_at'] as const
const articleCardColumns = ['id', 'slug', 'title', 'summary', 'author', 'published_at', 'updated_at'] as const

function toTutorialCard (r: { id: number, slug: string, title: string, summary: string, level: Level, min_age: number, max_age: number, minutes: number, partner: string, updated_at: Date }): TutorialCard {
  return { id: r.id, slug: r.slug, title: r.title, summary: r.summary, level: r.level, minAge: r.min_age, maxAge: r.max_age, minutes: r.minutes, partner: r.partner, updatedAt: r.updated_at }
}
function toArticleCard (r: { id: number, slug: string, title: string, summary: string, author: string, published_at: Date, updated_at: Date }): ArticleCard {
  return { id: r.id, slug: r.slug, title: r.title, summary: r.summary, author: r.author, publishedAt: r.published_at, updatedAt: r.updated_at }
}

export function createContentRepository (db: Kysely<Database>) {
  const now = sql<Date>`now()`
  return {
    async featuredTutorials (limit = 6): Promise<TutorialCard[]> {
      const rows = await db.selectFrom('tutorials').select(tutorialCardColumns)
        .where('published_at', '<=', now).orderBy('published_at', 'desc').orderBy('id', 'desc').limit(limit).execute()
      return rows.map(toTutorialCard)
    },

    async tutorials (filter: TutorialFilter, offset: number, limit: number): Promise<Page<TutorialCard>> {
      let q = db.selectFrom('tutorials').where('published_at', '<=', now)
      if (filter.level) q = q.where('level', '=', filter.level)
      if (filter.age !== undefined) q = q.where('min_age', '<=', filter.age).where('max_age', '>=', filter.age)
      if (filter.length !== undefined) q = q.where('minutes', '<=', filter.length)
      const [rows, count] = await Promise.all([
        q.select(tutorialCardColumns).orderBy('published_at', 'desc').orderBy('id', 'desc').offset(offset).limit(limit).execute(),
        q.select(db.fn.countAll<string>().as('n')).executeTakeFirstOrThrow()
      ])
      return { items: rows.map(toTutorialCard), total: Number(count.n) }
    },

    async tutorial (slug: string): Promise<Tutorial | undefined> {
      const r = await db.selectFrom('tutorials').selectAll()
        .where('slug', '=', slug).where('published_at', '<=', now).executeTakeFirst()
      if (!r) return undefined
      return { ...toTutorialCard(r), bodyHtml: r.body_html, publishedAt: r.published_at }
    },

    async latestNews (limit = 5): Promise<ArticleCard[]> {
      const rows = await db.selectFrom('news').select(articleCardColumns)
        .where('published_at', '<=', now).orderBy('published_at', 'desc').orderBy('id', 'desc').limit(limit).execute()
      return rows.map(toArticleCard)
    },

    async news (offset: number, limit: number): Promise<Page<ArticleCard>> {
      const q = db.selectFrom('news').where('published_at', '<=', now)
      const [rows, count] = await Promise.all([
        q.select(articleCardColumns).orderBy('published_at', 'desc').orderBy('id', 'desc').offset(offset).limit(limit).execute(),
        q.select(db.fn.countAll<string>().as('n')).executeTakeFirstOrThrow()
      ])
      return { items: rows.map(toArticleCard), total: Number(count.n) }
    },

    async article (slug: string): Promise<Article | undefined> {
      const r = await db.selectFrom('news').selectAll().where('slug', '=', slug).where('published_at', '<=', now).executeTakeFirst()
      return r ? { ...toArticleCard(r), bodyHtml: r.body_html } : undefined
    },

    /** Newest first; ties broken by id so pages never overlap. */
    async comments (newsId: number, offset: number, limit: number): Promise<Page<CommentView>> {
      const q = db.selectFrom('comments').where('news_id', '=', newsId)
      const [rows, count] = await Promise.all([
        q.select(['id', 'author', 'body', 'created_at']).orderBy('created_at', 'desc').orderBy('id', 'desc').offset(offset).limit(limit).execute(),
        q.select(db.fn.countAll<string>().as('n')).executeTakeFirstOrThrow()
      ])
      return { items: rows.map((r) => ({ id: String(r.id), author: r.author, body: r.body, createdAt: r.created_at })), total: Number(count.n) }
    },

    async eventsByCountry (): Promise<CountryCount[]> {
      const rows = await db.selectFrom('events')
        .select(['country', sql<string>`count(*)`.as('events'), sql<string>`coalesce(sum(expected_participants), 0)`.as('participants')])
        .groupBy('country').orderBy(sql`count(*)`, 'desc').orderBy('country').execute()
      return rows.map((r) => ({ country: r.country.trim(), events: Number(r.events), participants: Number(r.participants) }))
    },

    /** Most recently registered first, so a new sign-up is at the top of its country. */
    async eventsIn (country: string, offset: number, limit: number): Promise<Page<EventView>> {
      const q = db.selectFrom('events').where('country', '=', country)
      const [rows, count] = await Promise.all([
        q.select(['id', 'school', 'city', 'country', 'expected_participants', sql<string>`to_char(event_date, 'YYYY-MM-DD')`.as('event_date')])
          .orderBy('created_at', 'desc').orderBy('id', 'desc').offset(offset).limit(limit).execute(),
        q.select(db.fn.countAll<string>().as('n')).executeTakeFirstOrThrow()
      ])
      return {
        items: rows.map((r) => ({ id: String(r.id), school: r.school, city: r.city, country: r.country.trim(), expectedParticipants: r.expected_participants, eventDate: r.event_date })),
        total: Number(count.n)
      }
    },

    async participants (): Promise<number> {
      return readCounter(db, PARTICIPANTS)
    },

    async certificate (id: string): Promise<Certificate | undefined> {
      const r = await db.selectFrom('completions').innerJoin('tutorials', 'tutorials.id', 'completions.tutorial_id')
        .select(['completions.id', 'completions.name', 'completions.country', 'completions.created_at', 'tutorials.id as tutorial_id', 'tutorials.slug', 'tutorials.title'])
        .where('completions.id', '=', id).executeTakeFirst()
      return r ? { id: r.id, name: r.name, country: r.country.trim(), createdAt: r.created_at, tutorialId: r.tutorial_id, tutorialSlug: r.slug, tutorialTitle: r.title } : undefined
    },

    async sitemap (): Promise<SitemapEntry[]> {
      const [tutorials, news, countries] = await Promise.all([
        db.selectFrom('tutorials').select(['slug', 'updated_at']).where('published_at', '<=', now).orderBy('id').execute(),
        db.selectFrom('news').select(['slug', 'updated_at']).where('published_at', '<=', now).orderBy('id').execute(),
        db.selectFrom('events').select('country').distinct().orderBy('country').execute()
      ])
      return [
        { path: '/' }, { path: '/tutorials' }, { path: '/news' }, { path: '/events' }, { path: '/events/new' },
        ...tutorials.map((r) => ({ path: `/tutorials/${encodeURIComponent(r.slug)}`, updatedAt: r.updated_at })),
        ...news.map((r) => ({ path: `/news/${encodeURIComponent(r.slug)}`, updatedAt: r.updated_at })),
        ...countries.map((r) => ({ path: `/events?country=${r.country.trim()}` }))
      ]
    }
  }
}

export type ContentRepository = ReturnType<typeof createContentRepository>
