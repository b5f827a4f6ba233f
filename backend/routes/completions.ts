import { randomBytes } from 'node:crypto'
import type { FastifyInstance } from 'fastify'
import { Errors } from '../../common/errors.js'
import { isCountryCode } from '../../common/countries.js'
import { SurrogateKeys } from '../../common/surrogate-keys.js'
import { CompletionBody, type CompletionInput } from '../schemas.js'
import { bumpParticipants } from './events.js'
import { fieldError } from '../field-error.js'

export default async function completionRoutes (app: FastifyInstance): Promise<void> {
  app.post('/v1/completions', { schema: { body: CompletionBody } }, async (request, reply) => {
    const input = request.body as CompletionInput
    if (!isCountryCode(input.country)) throw fieldError('country', 'is not an ISO 3166-1 alpha-2 country code')
    return app.writer.run(request, reply, async (trx) => {
      const tutorial = await trx.selectFrom('tutorials').select('id').where('slug', '=', input.tutorial).executeTakeFirst()
      if (!tutorial) throw new Errors.NOT_FOUND(`no tutorial "${input.tutorial}"`)
      // Certificate ids are public URLs: unguessable, so nobody enumerates students' names.
      const id = randomBytes(12).toString('base64url')
      await trx.insertInto('completions').values({ id, tutorial_id: tutorial.id, name: input.name.trim(), country: input.country }).execute()
      await bumpParticipants(trx, 1)
      return {
        status: 201,
        body: { id, tutorial: input.tutorial, name: input.name.trim(), country: input.country, certificateUrl: `/certificates/${id}` },
        keys: [SurrogateKeys.counter]
      }
    })
  })
}
