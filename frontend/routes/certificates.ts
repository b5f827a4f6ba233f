/** `/certificates/:id`: a completion's certificate; immutable once issued. */
import type { FastifyInstance } from 'fastify'
import { SurrogateKeys } from '../../common/surrogate-keys.js'
import { certificatePage } from '../views/certificate.js'
import { notFoundPage } from '../views/errors.js'

const ID = /^[A-Za-z0-9_-]{1,64}$/

export default async function certificateRoutes (app: FastifyInstance) {
  app.get<{ Params: { id: string } }>('/certificates/:id', async (request, reply) => {
    const id = request.params.id
    return app.pages.serve(request, reply, {
      key: `/certificates/${encodeURIComponent(id)}`,
      async render (repos) {
        const c = ID.test(id) ? await repos.certificate(id) : undefined
        if (!c) return { status: 404, body: notFoundPage(app.assets, 'certificate'), tags: [SurrogateKeys.certificate(ID.test(id) ? id : 'invalid'), SurrogateKeys.site], policy: 'notFound' }
        return { body: certificatePage(app.assets, c), tags: [SurrogateKeys.certificate(c.id), SurrogateKeys.tutorial(c.tutorialId), SurrogateKeys.site], policy: 'certificate' }
      }
    })
  })
}
