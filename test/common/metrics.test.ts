import t from 'tap'
import Fastify from 'fastify'
import { createMetrics, metricsPlugin } from '../../common/metrics.js'
import { METRICS_TOKEN, scraper } from '../helpers/metrics.js'

async function appWith (token: string | undefined) {
  const app = Fastify({ logger: false })
  await app.register(metricsPlugin, { metrics: createMetrics({ role: 'test', defaults: false }), token })
  app.get('/page', async () => 'ok')
  await app.ready()
  return app
}

t.test('issue 25: GET /-/metrics answers the scraper only (every Fastify role registers this plugin)', async (t) => {
  const app = await appWith(METRICS_TOKEN)
  t.teardown(() => app.close())
  await app.inject('/page')
  const visitor = await app.inject('/-/metrics')
  t.equal(visitor.statusCode, 401)
  t.notMatch(visitor.body, /flashcrowd_/, 'no counters for a visitor')
  const wrong = await app.inject({ url: '/-/metrics', headers: { authorization: 'Bearer not-the-metrics-token-000' } })
  t.equal(wrong.statusCode, 403)
  t.notMatch(wrong.body, /flashcrowd_/)
  const ok = await app.inject({ url: '/-/metrics', headers: scraper })
  t.equal(ok.statusCode, 200)
  t.match(ok.body, /flashcrowd_http_requests_total\{method="GET",route="\/page",status="200",role="test"\} 1/)
  t.equal(ok.headers['cache-control'], 'no-store')

  const shut = await appWith(undefined)
  t.teardown(() => shut.close())
  t.equal((await shut.inject({ url: '/-/metrics', headers: scraper })).statusCode, 403, 'no METRICS_TOKEN: refused to everyone')
})
