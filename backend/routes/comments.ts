import type { FastifyInstance } from 'fastify'
import { Errors } from '../../common/errors.js'
import { SurrogateKeys } from '../../common/surrogate-keys.js'
import { CommentBody, type CommentInput } from '../schemas.js'

export default async function commentRoutes (app: FastifyInstance): Promise<void> {
  app.post('/v1/comments', { schema: { body: CommentBody } }, async (request, reply) => {
    const input = request.body as CommentInput
    return app.writer.run(request, reply, async (trx) => {
      const article = await trx.selectFrom('news').select('id').where('slug', '=', input.news).executeTakeFirst()
      if (!article) throw new Errors.NOT_FOUND(`no news article "${input.news}"`)
      const row = await trx.insertInto('comments')
        .values({ news_id: article.id, author: input.author.trim(), body: input.body.trim() })
        .returning(['id', 'author', 'body', 'created_at']).executeTakeFirstOrThrow()
      return {
        status: 201,
        body: { id: row.id, news: input.news, author: row.author, body: row.body, createdAt: row.created_at },
        keys: [SurrogateKeys.article(article.id)]
      }
    })
  })
}
