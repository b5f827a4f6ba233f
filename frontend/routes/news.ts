/** `/news`, `/news/:slug` (comments newest first) and the comment form. */
import type { FastifyInstance } from 'fastify'
import { SurrogateKeys } from '../../common/surrogate-keys.js'
import { articlePage, newsPage } from '../views/news.js'
import { notFoundPage } from '../views/errors.js'
import { COMMENT_RULES, forwardForm } from '../forms.js'
import { SLUG, pageParam, type Query } from './params.js'
import type { ContentRepository } from '../repositories.js'

const NEWS_PAGE_SIZE = 10
const COMMENTS_PAGE_SIZE = 20

export default async function newsRoutes (app: FastifyInstance) {
  app.get('/news', async (request, reply) => {
    const page = pageParam(request.query as Query)
    return app.pages.serve(request, reply, {
      key: page > 1 ? `/news?page=${page}` : '/news',
      async render (repos) {
        const result = await repos.news((page - 1) * NEWS_PAGE_SIZE, NEWS_PAGE_SIZE)
        const tags = [SurrogateKeys.news, SurrogateKeys.site]
        if (page > 1 && result.items.length === 0) return { status: 404, body: notFoundPage(app.assets, 'page of news'), tags, policy: 'notFound' }
        return { body: newsPage(app.assets, { page, pageSize: NEWS_PAGE_SIZE, result }), tags, policy: 'page' }
      }
    })
  })

  async function loadArticle (repos: ContentRepository, slug: string, page: number) {
    const article = SLUG.test(slug) ? await repos.article(slug) : undefined
    if (!article) return undefined
    const comments = await repos.comments(article.id, (page - 1) * COMMENTS_PAGE_SIZE, COMMENTS_PAGE_SIZE)
    return { article, comments }
  }

  app.get<{ Params: { slug: string } }>('/news/:slug', async (request, reply) => {
    const slug = request.params.slug
    const page = pageParam(request.query as Query)
    return app.pages.serve(request, reply, {
      key: `/news/${encodeURIComponent(slug)}${page > 1 ? `?page=${page}` : ''}`,
      async render (repos) {
        const data = await loadArticle(repos, slug, page)
        if (!data || (page > 1 && data.comments.items.length === 0)) {
          // Tagged `news`: publishing this article purges the 404 too.
          return { status: 404, body: notFoundPage(app.assets, data ? 'page of comments' : 'article'), tags: [SurrogateKeys.news, ...(data ? [SurrogateKeys.article(data.article.id)] : []), SurrogateKeys.site], policy: 'notFound' }
        }
        return {
          body: articlePage(app.assets, { ...data, page, pageSize: COMMENTS_PAGE_SIZE }),
          tags: [SurrogateKeys.article(data.article.id), SurrogateKeys.site],
          policy: 'page'
        }
      }
    })
  })

  app.post<{ Params: { slug: string } }>('/news/:slug/comments', async (request, reply) => {
    const slug = request.params.slug
    return forwardForm(request, reply, {
      action: `comment:${slug}`,
      rules: COMMENT_RULES,
      path: '/v1/comments',
      toPayload: (v) => ({ news: slug, author: v.author, body: v.body }),
      // Newest first: the new comment is at the top of the first page.
      location: (answer) => ({ path: `/news/${encodeURIComponent(slug)}`, hash: answer.id !== undefined ? `comment-${String(answer.id).replace(/[^A-Za-z0-9_-]/g, '')}` : 'comments' }),
      reshow: async (_status, form) => {
        const data = await loadArticle(app.repos, slug, 1)
        return data ? articlePage(app.assets, { ...data, page: 1, pageSize: COMMENTS_PAGE_SIZE, form }) : undefined
      },
      backend: app.backend,
      allowedOrigins: app.settings.allowedOrigins,
      notFound: async () => reply.callNotFound()
    })
  })
}
