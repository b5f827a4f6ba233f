import type { FastifyInstance } from 'fastify'
import { isCountryCode } from '../../common/countries.js'
import { SurrogateKeys } from '../../common/surrogate-keys.js'
import { EventBody, eventDateProblem, type EventInput } from '../schemas.js'
import { fieldError } from '../field-error.js'
import { ISO_NOW, jsonMembers, type WriteKind } from '../write-kind.js'
import { Errors } from '../../common/errors.js'

/**
 * A batch of sign-ups in one statement: ids drawn first (each answer maps
 * back to its input), the rows stored, each organizer's confirmation e-mail
 * queued (mail_messages, sent later by the mailer role: the request never
 * waits for SMTP), and the live counter ("N participants so far") bumped once
 * for the whole batch on the batch's shard. Mail rows are stored from `go`
 * like the events, in the same statement: the e-mail exists exactly when the
 * event does (a replay or a key held elsewhere queues none).
 */
const EVENT_INPUT = `
  drawn as materialized (
    select u.ord::int as ord, nextval('events_id_seq') as id, u.organizer, u.email, u.school, u.country, u.city, u.expected, u.event_date, u.members, u.message_id
    from unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int[], $7::date[], $8::text[], $11::text[])
      with ordinality as u(organizer, email, school, country, city, expected, event_date, members, message_id, ord)
  ),
  input as (
    select d.*, true as ok, 201 as status,
           '{"id":"' || d.id || '",' || d.members || ',"createdAt":"' || ${ISO_NOW} || '"}' as response,
           $9::text[] as keys
    from drawn d
  )`

const EVENT_STORE = `
  stored as (
    insert into events (id, organizer, email, school, country, city, expected_participants, event_date)
    select id, organizer, email, school, country, city, expected, event_date from go
  ),
  mailed as (
    insert into mail_messages (message_id, kind, recipient, payload)
    select message_id, 'event-confirmation', email, jsonb_build_object(
      'eventId', id::text, 'organizer', organizer, 'school', school, 'country', country, 'city', city,
      'expectedParticipants', expected, 'eventDate', to_char(event_date, 'YYYY-MM-DD'))
    from go
  ),
  bumped as (
    insert into counters (name, value) select $10, sum(expected) from go having count(*) > 0
    on conflict (name) do update set value = counters.value + excluded.value
  )`

const EVENT_KEYS = [SurrogateKeys.events, SurrogateKeys.counter]

export const eventWrites: WriteKind<EventInput> = {
  name: 'event',
  statement (inputs, context) {
    const organizers = inputs.map((e) => e.organizer.trim())
    const schools = inputs.map((e) => e.school.trim())
    const cities = inputs.map((e) => e.city.trim())
    return {
      input: EVENT_INPUT,
      store: EVENT_STORE,
      values: [
        organizers, inputs.map((e) => e.email.trim().toLowerCase()), schools, inputs.map((e) => e.country), cities,
        inputs.map((e) => e.expectedParticipants), inputs.map((e) => e.eventDate),
        inputs.map((e, j) => jsonMembers({
          organizer: organizers[j], school: schools[j], country: e.country, city: cities[j], expectedParticipants: e.expectedParticipants, eventDate: e.eventDate
        })),
        EVENT_KEYS, context.counterShard,
        // Drawn for every input; only the stored ones' are used.
        inputs.map(() => context.messageId())
      ]
    }
  },
  // Every sign-up that passed validation can be stored.
  refusal: () => new Errors.VALIDATION('the sign-up could not be stored')
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
