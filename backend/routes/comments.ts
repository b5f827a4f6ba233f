import type { FastifyInstance } from 'fastify'
import { Errors } from '../../common/errors.js'
import { SurrogateKeys } from '../../common/surrogate-keys.js'
import { CommentBody, type CommentInput } from '../schemas.js'
import type { WriteAnswer, WriteKind } from '../write-kind.js'

/**
 * A batch of comments in one statement: look up each article by slug, give
 * the found ones an id (so each answer maps back to its input, whatever
 * order the insert returns rows in), insert them, and return one row per
 * input; an unknown article is a 404 for that comment alone.
 */
const INSERT_COMMENTS = `
  with input as materialized (
    select u.ord::int as ord, n.id as news_id, u.author, u.body,
           case when n.id is not null then nextval('comments_id_seq') end as id
    from unnest($1::text[], $2::text[], $3::text[]) with ordinality as u(slug, author, body, ord)
    left join news n on n.slug = u.slug
  ), inserted as (
    insert into comments (id, news_id, author, body)
    select id, news_id, author, body from input where id is not null
    returning id, created_at
  )
  select i.ord, i.id, i.news_id, x.created_at
  from input i left join inserted x on x.id = i.id
  order by i.ord`

export const commentWrites: WriteKind<CommentInput> = {
  name: 'comment',
  async execute (db, inputs) {
    const res = await db.query<{ ord: number, id: string | null, news_id: number | null, created_at: Date | null }>(INSERT_COMMENTS, [
      inputs.map((c) => c.news), inputs.map((c) => c.author.trim()), inputs.map((c) => c.body.trim())
    ])
    return res.rows.map((row, j): WriteAnswer | Error => {
      const input = inputs[j]
      if (row.id === null || row.news_id === null) return new Errors.NOT_FOUND(`no news article "${input.news}"`)
      return {
        status: 201,
        body: { id: row.id, news: input.news, author: input.author.trim(), body: input.body.trim(), createdAt: row.created_at },
        keys: [SurrogateKeys.article(row.news_id)]
      }
    })
  }
}

export default async function commentRoutes (app: FastifyInstance): Promise<void> {
  // One text posted again and again under an article is spam whoever signs it: the author is not part of "the same".
  app.post('/v1/comments', { schema: { body: CommentBody }, config: { sameContent: (b: CommentInput) => [b.news, b.body] } }, async (request, reply) => {
    return app.writer.run(request, reply, commentWrites, request.body as CommentInput)
  })
}
