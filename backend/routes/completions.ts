import { randomBytes } from 'node:crypto'
import type { FastifyInstance } from 'fastify'
import { Errors } from '../../common/errors.js'
import { isCountryCode } from '../../common/countries.js'
import { SurrogateKeys } from '../../common/surrogate-keys.js'
import { CompletionBody, type CompletionInput } from '../schemas.js'
import { fieldError } from '../field-error.js'
import type { WriteAnswer, WriteKind } from '../write-kind.js'

/**
 * A batch of "I did it" in one statement: each tutorial looked up by slug,
 * the found ones inserted under their certificate id, the certificate link
 * queued as an e-mail for those who left an address (sent later by the
 * mailer role), the live counter bumped once by how many were inserted; an
 * unknown tutorial is a 404 for that one alone (and queues nothing).
 */
const INSERT_COMPLETIONS = `
  with input as materialized (
    select u.ord::int as ord, u.id, t.id as tutorial_id, t.title, u.slug, u.name, u.country, u.email, u.message_id
    from unnest($1::text[], $2::text[], $3::text[], $4::text[], $6::text[], $7::text[]) with ordinality as u(id, slug, name, country, email, message_id, ord)
    left join tutorials t on t.slug = u.slug
  ), mailed as (
    insert into mail_messages (message_id, kind, recipient, payload)
    select message_id, 'certificate', email, jsonb_build_object(
      'certificateId', id, 'name', name, 'country', country, 'tutorial', slug, 'tutorialTitle', title)
    from input where tutorial_id is not null and email is not null
  ), inserted as (
    insert into completions (id, tutorial_id, name, country)
    select id, tutorial_id, name, country from input where tutorial_id is not null
    returning id
  ), bumped as (
    insert into counters (name, value) select $5, count(*) from inserted having count(*) > 0
    on conflict (name) do update set value = counters.value + excluded.value
  )
  select i.ord, i.tutorial_id from input i order by i.ord`

export const completionWrites: WriteKind<CompletionInput> = {
  name: 'completion',
  async execute (db, inputs, context) {
    // Certificate ids are public URLs: unguessable, so nobody enumerates students' names.
    const ids = inputs.map(() => randomBytes(12).toString('base64url'))
    const res = await db.query<{ ord: number, tutorial_id: number | null }>(INSERT_COMPLETIONS, [
      ids, inputs.map((c) => c.tutorial), inputs.map((c) => c.name.trim()), inputs.map((c) => c.country), context.counterShard,
      inputs.map((c) => c.email?.toLowerCase() ?? null), inputs.map((c) => c.email === undefined ? null : context.messageId())
    ])
    return res.rows.map((row, j): WriteAnswer | Error => {
      const input = inputs[j]
      if (row.tutorial_id === null) return new Errors.NOT_FOUND(`no tutorial "${input.tutorial}"`)
      return {
        status: 201,
        body: { id: ids[j], tutorial: input.tutorial, name: input.name.trim(), country: input.country, certificateUrl: `/certificates/${ids[j]}` },
        keys: [SurrogateKeys.counter]
      }
    })
  }
}

export default async function completionRoutes (app: FastifyInstance): Promise<void> {
  // Thirty pupils called Anna are thirty certificates (thirty keys); a thousand are a script.
  app.post('/v1/completions', { schema: { body: CompletionBody }, config: { sameContent: (b: CompletionInput) => [b.tutorial, b.name, b.country, b.email ?? ''] } }, async (request, reply) => {
    const input = request.body as CompletionInput
    if (!isCountryCode(input.country)) throw fieldError('country', 'is not an ISO 3166-1 alpha-2 country code')
    return app.writer.run(request, reply, completionWrites, input)
  })
}
