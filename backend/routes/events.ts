import type { FastifyInstance } from 'fastify'
import { isCountryCode } from '../../common/countries.js'
import { SurrogateKeys } from '../../common/surrogate-keys.js'
import { EventBody, eventDateProblem, type EventInput } from '../schemas.js'
import { fieldError } from '../field-error.js'
import type { WriteKind } from '../write-kind.js'

/**
 * A batch of sign-ups in one statement: ids drawn first (each answer maps
 * back to its input), the rows inserted, each organizer's confirmation
 * e-mail queued (mail_messages, sent later by the mailer role: the request
 * never waits for SMTP), and the live counter ("N participants so far")
 * bumped once for the whole batch on the batch's shard. One statement, so
 * the e-mail exists exactly when the event does.
 */
const INSERT_EVENTS = `
  with input as materialized (
    select u.ord::int as ord, nextval('events_id_seq') as id, u.organizer, u.email, u.school, u.country, u.city, u.expected, u.event_date, u.message_id
    from unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int[], $7::date[], $10::text[])
      with ordinality as u(organizer, email, school, country, city, expected, event_date, message_id, ord)
  ), mailed as (
    insert into mail_messages (message_id, kind, recipient, payload)
    select message_id, 'event-confirmation', email, jsonb_build_object(
      'eventId', id::text, 'organizer', organizer, 'school', school, 'country', country, 'city', city,
      'expectedParticipants', expected, 'eventDate', to_char(event_date, 'YYYY-MM-DD'))
    from input
  ), inserted as (
    insert into events (id, organizer, email, school, country, city, expected_participants, event_date)
    select id, organizer, email, school, country, city, expected, event_date from input
    returning id, created_at
  ), bumped as (
    insert into counters (name, value) values ($8, $9)
    on conflict (name) do update set value = counters.value + excluded.value
  )
  select i.ord, i.id, x.created_at
  from input i join inserted x on x.id = i.id
  order by i.ord`

export const eventWrites: WriteKind<EventInput> = {
  name: 'event',
  async execute (db, inputs, context) {
    const people = inputs.reduce((sum, e) => sum + e.expectedParticipants, 0)
    const res = await db.query<{ ord: number, id: string, created_at: Date }>(INSERT_EVENTS, [
      inputs.map((e) => e.organizer.trim()), inputs.map((e) => e.email.trim().toLowerCase()), inputs.map((e) => e.school.trim()),
      inputs.map((e) => e.country), inputs.map((e) => e.city.trim()), inputs.map((e) => e.expectedParticipants), inputs.map((e) => e.eventDate),
      context.counterShard, people, inputs.map(() => context.messageId())
    ])
    return res.rows.map((row, j) => {
      const input = inputs[j]
      return {
        status: 201,
        body: {
          id: row.id, organizer: input.organizer.trim(), school: input.school.trim(), country: input.country, city: input.city.trim(),
          expectedParticipants: input.expectedParticipants, eventDate: input.eventDate, createdAt: row.created_at
        },
        keys: [SurrogateKeys.events, SurrogateKeys.counter]
      }
    })
  }
}

export default async function eventRoutes (app: FastifyInstance, opts: { now: () => number }): Promise<void> {
  app.post('/v1/events', { schema: { body: EventBody }, config: { sameContent: (b: EventInput) => [b.organizer, b.email, b.school, b.country, b.city, b.expectedParticipants, b.eventDate] } }, async (request, reply) => {
    const input = request.body as EventInput
    if (!isCountryCode(input.country)) throw fieldError('country', 'is not an ISO 3166-1 alpha-2 country code')
    const dateProblem = eventDateProblem(input.eventDate, new Date(opts.now()))
    if (dateProblem) throw fieldError('eventDate', dateProblem)
    return app.writer.run(request, reply, eventWrites, input)
  })
}
