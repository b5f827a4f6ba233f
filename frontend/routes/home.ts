/** `/` and the tiny counter endpoint it polls. */
import type { FastifyInstance } from 'fastify'
import { SurrogateKeys } from '../../common/surrogate-keys.js'
import { homePage } from '../views/home.js'

export default async function homeRoutes (app: FastifyInstance) {
  app.get('/', async (request, reply) => app.pages.serve(request, reply, {
    key: '/',
    async render (repos) {
      const [tutorials, news, participants] = await Promise.all([repos.featuredTutorials(8), repos.latestNews(5), repos.participants()])
      // Not tagged `counter`: the number here is only the no-JavaScript fallback, refreshed by counter.js.
      return { body: homePage(app.assets, { tutorials, news, participants }), tags: [SurrogateKeys.home, SurrogateKeys.site], policy: 'page' }
    }
  }))

  app.get('/counter.json', async (request, reply) => app.pages.serve(request, reply, {
    key: '/counter.json',
    async render (repos) {
      const participants = await repos.participants()
      return { body: JSON.stringify({ participants }), contentType: 'application/json; charset=utf-8', tags: [SurrogateKeys.counter], policy: 'counter' }
    }
  }))
}
