import type { FastifyInstance } from 'fastify'
import { Errors } from '../../common/errors.js'
import { SurrogateKeys } from '../../common/surrogate-keys.js'
import { CommentBody, type CommentInput } from '../schemas.js'
import { ISO_NOW, jsonMembers, type WriteKind } from '../write-kind.js'

/**
 * A batch of comments in one statement: look up each article by slug, give
 * the found ones an id (drawn once per row in the materialized CTE, so each
 * answer maps back to its input) and their answer text, store the ones the
 * batch may write; an unknown article is a 404 for that comment alone.
 * The answer is `{"id":"…", news, author, body, "createdAt":"…"}`: the
 * middle is JSON from JS, the id and the time come from the database.
 */
const COMMENT_INPUT = `
  drawn as materialized (
    select u.ord::int as ord, n.id as news_id, u.author, u.body, u.members,
           case when n.id is not null then nextval('comments_id_seq') end as id
    from unnest($1::text[], $2::text[], $3::text[], $4::text[]) with ordinality as u(slug, author, body, members, ord)
    left join news n on n.slug = u.slug
  ),
  input as (
    select d.ord, d.id, d.news_id, d.author, d.body, d.news_id is not null as ok, 201 as status,
           '{"id":"' || d.id || '",' || d.members || ',"createdAt":"' || ${ISO_NOW} || '"}' as response,
           array[$5::text || d.news_id] as keys
    from drawn d
  )`

const COMMENT_STORE = `
  stored as (insert into comments (id, news_id, author, body) select id, news_id, author, body from go)`

/** `news:` — the article key's prefix, completed by the article's id in SQL. */
const ARTICLE_KEY_PREFIX = SurrogateKeys.article('')

export const commentWrites: WriteKind<CommentInput> = {
  name: 'comment',
  statement (inputs) {
    const authors = inputs.map((c) => c.author.trim())
    const bodies = inputs.map((c) => c.body.trim())
    return {
      input: COMMENT_INPUT,
      store: COMMENT_STORE,
      values: [inputs.map((c) => c.news), authors, bodies, inputs.map((c, j) => jsonMembers({ news: c.news, author: authors[j], body: bodies[j] })), ARTICLE_KEY_PREFIX]
    }
  },
  refusal: (input) => new Errors.NOT_FOUND(`no news article "${input.news}"`)
}

export default async function commentRoutes (app: FastifyInstance): Promise<void> {
  // One text posted again and again under an article is spam whoever signs it: the author is not part of "the same".
  app.post('/v1/comments', { schema: { body: CommentBody }, config: { sameContent: (b: CommentInput) => [b.news, b.body] } }, async (request, reply) => {
    return app.writer.run(request, reply, commentWrites, request.body as CommentInput)
  })
}
