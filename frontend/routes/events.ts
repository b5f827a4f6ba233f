/** `/events` (by country, or one country's list), `/events/new` and the sign-up form. */
import type { FastifyInstance } from 'fastify'
import { SurrogateKeys } from '../../common/surrogate-keys.js'
import { isCountryCode } from '../../common/countries.js'
import { Errors } from '../../common/errors.js'
import { countryEventsPage, eventsPage, newEventPage } from '../views/events.js'
import { notFoundPage } from '../views/errors.js'
import { EVENT_RULES, forwardForm } from '../forms.js'
import { pageParam, stringParam, type Query } from './params.js'

const PAGE_SIZE = 20

export default async function eventRoutes (app: FastifyInstance) {
  app.get('/events', async (request, reply) => {
    const q = request.query as Query
    const country = stringParam(q, 'country')?.toUpperCase()
    const page = pageParam(q)
    const tags = [SurrogateKeys.events, SurrogateKeys.site]
    if (country === undefined) {
      if (page > 1) throw new Errors.VALIDATION('page needs a country')
      return app.pages.serve(request, reply, {
        key: '/events',
        async render (repos) {
          return { body: eventsPage(app.assets, { countries: await repos.eventsByCountry() }), tags, policy: 'page' }
        }
      })
    }
    if (!isCountryCode(country)) throw new Errors.VALIDATION('country must be an ISO 3166-1 alpha-2 code')
    return app.pages.serve(request, reply, {
      key: `/events?country=${country}${page > 1 ? `&page=${page}` : ''}`,
      async render (repos) {
        const result = await repos.eventsIn(country, (page - 1) * PAGE_SIZE, PAGE_SIZE)
        if (page > 1 && result.items.length === 0) return { status: 404, body: notFoundPage(app.assets, 'page of events'), tags, policy: 'notFound' }
        return { body: countryEventsPage(app.assets, { country, page, pageSize: PAGE_SIZE, result }), tags, policy: 'page' }
      }
    })
  })

  app.get('/events/new', async (request, reply) => app.pages.serve(request, reply, {
    key: '/events/new',
    async render (repos) {
      return { body: newEventPage(app.assets), tags: [SurrogateKeys.site], policy: 'page' }
    }
  }))

  app.post('/events', async (request, reply) => forwardForm(request, reply, {
    action: 'event',
    rules: EVENT_RULES,
    path: '/v1/events',
    toPayload: (v) => ({
      organizer: v.organizer, email: v.email, school: v.school, country: v.country, city: v.city,
      expectedParticipants: Number(v.expectedParticipants), eventDate: v.eventDate
    }),
    location: (answer) => {
      const country = typeof answer.country === 'string' && isCountryCode(answer.country) ? answer.country : undefined
      const id = answer.id !== undefined ? String(answer.id).replace(/[^A-Za-z0-9_-]/g, '') : undefined
      return country ? { path: `/events?country=${country}`, hash: id ? `event-${id}` : undefined } : { path: '/events' }
    },
    reshow: async (_status, form) => newEventPage(app.assets, form),
    backend: app.backend,
    allowedOrigins: app.settings.allowedOrigins,
    notFound: async () => reply.callNotFound()
  }))
}
