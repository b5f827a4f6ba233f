/** `/sitemap.xml`: every public page (read by crawlers and by `npm run warm`). */
import type { FastifyInstance } from 'fastify'
import { SurrogateKeys } from '../../common/surrogate-keys.js'
import { sitemapXml } from '../views/sitemap.js'

export default async function sitemapRoutes (app: FastifyInstance) {
  app.get('/sitemap.xml', async (request, reply) => {
    // Absolute URLs need the public origin; as seen through trusted proxies (trustProxy). Part of the key, so one host's sitemap never answers another.
    const base = `${request.protocol}://${request.host}`
    return app.pages.serve(request, reply, {
      key: `/sitemap.xml?base=${encodeURIComponent(base)}`,
      async render (repos) {
        return { body: sitemapXml(base, await repos.sitemap()), contentType: 'application/xml; charset=utf-8', tags: [SurrogateKeys.sitemap, SurrogateKeys.site], policy: 'sitemap' }
      }
    })
  })
}
