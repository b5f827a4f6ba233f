/** `/tutorials`, `/tutorials/:slug` and its "I did it" form. */
import type { FastifyInstance } from 'fastify'
import { SurrogateKeys } from '../../common/surrogate-keys.js'
import { LEVELS } from '../repositories.js'
import { AGE_CHOICES, LENGTH_CHOICES, tutorialPage, tutorialsPage, tutorialsQuery } from '../views/tutorials.js'
import { notFoundPage } from '../views/errors.js'
import { COMPLETION_RULES, forwardForm } from '../forms.js'
import { SLUG, enumParam, intParam, pageParam, type Query } from './params.js'

const PAGE_SIZE = 12

export default async function tutorialRoutes (app: FastifyInstance) {
  app.get('/tutorials', async (request, reply) => {
    const q = request.query as Query
    const filter = { level: enumParam(q, 'level', LEVELS), age: intParam(q, 'age', AGE_CHOICES), length: intParam(q, 'length', LENGTH_CHOICES) }
    const page = pageParam(q)
    return app.pages.serve(request, reply, {
      key: `/tutorials${tutorialsQuery(filter, page)}`,
      async render (repos) {
        const result = await repos.tutorials(filter, (page - 1) * PAGE_SIZE, PAGE_SIZE)
        const tags = [SurrogateKeys.tutorials, SurrogateKeys.site]
        if (page > 1 && result.items.length === 0) return { status: 404, body: notFoundPage(app.assets, 'page of tutorials'), tags, policy: 'notFound' }
        return { body: tutorialsPage(app.assets, { filter, page, pageSize: PAGE_SIZE, result }), tags, policy: 'page' }
      }
    })
  })

  const notFound = (slug: string) => ({ status: 404, body: notFoundPage(app.assets, 'tutorial'), tags: [SurrogateKeys.tutorials, SurrogateKeys.site], policy: 'notFound' as const, slug })

  app.get<{ Params: { slug: string } }>('/tutorials/:slug', async (request, reply) => {
    const slug = request.params.slug
    return app.pages.serve(request, reply, {
      key: `/tutorials/${encodeURIComponent(slug)}`,
      async render (repos) {
        const t = SLUG.test(slug) ? await repos.tutorial(slug) : undefined
        if (!t) return notFound(slug)
        return { body: tutorialPage(app.assets, t), tags: [SurrogateKeys.tutorial(t.id), SurrogateKeys.site], policy: 'page' }
      }
    })
  })

  app.post<{ Params: { slug: string } }>('/tutorials/:slug/done', async (request, reply) => {
    const slug = request.params.slug
    return forwardForm(request, reply, {
      action: `done:${slug}`,
      rules: COMPLETION_RULES,
      path: '/v1/completions',
      toPayload: (v) => ({ tutorial: slug, name: v.name, country: v.country, ...(v.email ? { email: v.email } : {}) }),
      location: (answer) => {
        const url = typeof answer.certificateUrl === 'string' && /^\/certificates\/[A-Za-z0-9_-]+$/.test(answer.certificateUrl)
          ? answer.certificateUrl
          : `/certificates/${encodeURIComponent(String(answer.id))}`
        return { path: url }
      },
      reshow: async (_status, form) => {
        const t = SLUG.test(slug) ? await app.repos.tutorial(slug) : undefined
        return t ? tutorialPage(app.assets, t, form) : undefined
      },
      backend: app.backend,
      allowedOrigins: app.settings.allowedOrigins,
      notFound: async () => reply.callNotFound()
    })
  })
}
