import { randomBytes } from 'node:crypto'
import type { FastifyInstance } from 'fastify'
import { Errors } from '../../common/errors.js'
import { isCountryCode } from '../../common/countries.js'
import { SurrogateKeys } from '../../common/surrogate-keys.js'
import { CompletionBody, type CompletionInput } from '../schemas.js'
import { fieldError } from '../field-error.js'
import type { WriteKind } from '../write-kind.js'

/**
 * A batch of "I did it" in one statement: each tutorial looked up by slug,
 * the found ones stored under their certificate id, the certificate link
 * queued as an e-mail for those who left an address (sent later by the
 * mailer role; stored from `go`, so a replay, a key held elsewhere or an
 * unknown tutorial queues nothing), the live counter bumped once by how many
 * were stored; an unknown tutorial is a 404 for that one alone. The whole
 * answer is known before the database is asked.
 */
const COMPLETION_INPUT = `
  input as (
    select u.ord::int as ord, u.id, t.id as tutorial_id, t.title, u.slug, u.name, u.country, u.email, u.message_id,
           t.id is not null as ok, 201 as status, u.response, $6::text[] as keys
    from unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $8::text[], $9::text[])
      with ordinality as u(id, slug, name, country, response, email, message_id, ord)
    left join tutorials t on t.slug = u.slug
  )`

const COMPLETION_STORE = `
  stored as (
    insert into completions (id, tutorial_id, name, country) select id, tutorial_id, name, country from go
  ),
  mailed as (
    insert into mail_messages (message_id, kind, recipient, payload)
    select message_id, 'certificate', email, jsonb_build_object(
      'certificateId', id, 'name', name, 'country', country, 'tutorial', slug, 'tutorialTitle', title)
    from go where email is not null
  ),
  bumped as (
    insert into counters (name, value) select $7, count(*) from go having count(*) > 0
    on conflict (name) do update set value = counters.value + excluded.value
  )`

const COMPLETION_KEYS = [SurrogateKeys.counter]

export const completionWrites: WriteKind<CompletionInput> = {
  name: 'completion',
  statement (inputs, context) {
    // Certificate ids are public URLs: unguessable, so nobody enumerates students' names.
    const ids = inputs.map(() => randomBytes(12).toString('base64url'))
    const names = inputs.map((c) => c.name.trim())
    return {
      input: COMPLETION_INPUT,
      store: COMPLETION_STORE,
      values: [
        ids, inputs.map((c) => c.tutorial), names, inputs.map((c) => c.country),
        inputs.map((c, j) => JSON.stringify({ id: ids[j], tutorial: c.tutorial, name: names[j], country: c.country, certificateUrl: `/certificates/${ids[j]}` })),
        COMPLETION_KEYS, context.counterShard,
        inputs.map((c) => c.email?.toLowerCase() ?? null), inputs.map((c) => c.email === undefined ? null : context.messageId())
      ]
    }
  },
  refusal: (input) => new Errors.NOT_FOUND(`no tutorial "${input.tutorial}"`)
}

export default async function completionRoutes (app: FastifyInstance): Promise<void> {
  // Thirty pupils called Anna are thirty certificates (thirty keys); a thousand are a script.
  app.post('/v1/completions', { schema: { body: CompletionBody }, config: { sameContent: (b: CompletionInput) => [b.tutorial, b.name, b.country, b.email ?? ''] } }, async (request, reply) => {
    const input = request.body as CompletionInput
    if (!isCountryCode(input.country)) throw fieldError('country', 'is not an ISO 3166-1 alpha-2 country code')
    return app.writer.run(request, reply, completionWrites, input)
  })
}
