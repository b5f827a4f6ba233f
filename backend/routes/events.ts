import type { FastifyInstance } from 'fastify'
import { bumpCounter, PARTICIPANTS } from '../../common/counters.js'
import { Errors } from '../../common/errors.js'
import { isCountryCode } from '../../common/countries.js'
import { SurrogateKeys } from '../../common/surrogate-keys.js'
import { fieldError } from '../field-error.js'
import { EventBody, eventDateProblem, type EventInput } from '../schemas.js'

export default async function eventRoutes (app: FastifyInstance, opts: { now: () => number }): Promise<void> {
  app.post('/v1/events', { schema: { body: EventBody } }, async (request, reply) => {
    const input = request.body as EventInput
    if (!isCountryCode(input.country)) throw fieldError('country', 'is not an ISO 3166-1 alpha-2 country code')
    const dateProblem = eventDateProblem(input.eventDate, new Date(opts.now()))
    if (dateProblem) throw fieldError('eventDate', dateProblem)
    return app.writer.run(request, reply, async (trx) => {
      const row = await trx.insertInto('events').values({
        organizer: input.organizer.trim(), email: input.email.trim().toLowerCase(), school: input.school.trim(),
        country: input.country, city: input.city.trim(), expected_participants: input.expectedParticipants, event_date: input.eventDate
      }).returning(['id', 'created_at']).executeTakeFirstOrThrow()
      await bumpParticipants(trx, input.expectedParticipants)
      return {
        status: 201,
        body: {
          id: row.id, organizer: input.organizer.trim(), school: input.school.trim(), country: input.country, city: input.city.trim(),
          expectedParticipants: input.expectedParticipants, eventDate: input.eventDate, createdAt: row.created_at
        },
        keys: [SurrogateKeys.events, SurrogateKeys.counter]
      }
    })
  })
}

/** The live counter: everyone expected at an event plus everyone who finished a tutorial. */
export async function bumpParticipants (trx: Parameters<Parameters<FastifyInstance['writer']['run']>[2]>[0], by: number): Promise<void> {
  await bumpCounter(trx, PARTICIPANTS, by)
}
