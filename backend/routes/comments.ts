import type { FastifyInstance } from 'fastify'
import { Errors } from '../../common/errors.js'
import { SurrogateKeys } from '../../common/surrogate-keys.js'
import { CommentBody, type CommentInput } from '../schemas.js'

export default async function commentRoutes (app: FastifyInstance): Promise<void> {
  // One text posted again and again under an article is spam whoever signs it: the author is not part of "the same".
  app.post('/v1/comments', { schema: { body: CommentBody }, config: { sameContent: (b: CommentInput) => [b.news, b.body] } }, async (request, reply) => {
    const input = request.body as CommentInput
    return app.writer.run(request, reply, async (trx) => {
      // Look-up and insert in one statement: one round trip fewer on the hottest write.
      const row = await trx.insertInto('comments')
        .columns(['news_id', 'author', 'body'])
        .expression((eb) => eb.selectFrom('news')
          .select((s) => ['id', s.val(input.author.trim()).as('author'), s.val(input.body.trim()).as('body')])
          .where('slug', '=', input.news))
        .returning(['id', 'news_id', 'author', 'body', 'created_at']).executeTakeFirst()
      if (!row) throw new Errors.NOT_FOUND(`no news article "${input.news}"`)
      return {
        status: 201,
        body: { id: row.id, news: input.news, author: row.author, body: row.body, createdAt: row.created_at },
        keys: [SurrogateKeys.article(row.news_id)]
      }
    })
  })
}
