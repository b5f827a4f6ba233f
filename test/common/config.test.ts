import t from 'tap'
import { Type } from '@sinclair/typebox'
import { loadConfig, ConfigError, CommonEnv, Port, UrlList, list } from '../../common/config.js'

const Schema = Type.Object({ ...CommonEnv, PORT: Port('port', 3000), UPSTREAMS: Type.Optional(UrlList('upstreams')) })

t.test('defaults and conversion', async (t) => {
  const c = loadConfig(Schema, { PORT: '8080' })
  t.equal(c.PORT, 8080)
  t.equal(c.HOST, '127.0.0.1')
  t.equal(c.LOG_LEVEL, 'info')
  t.equal(c.REDIS_URL, undefined)
})

t.test('blank values count as unset', async (t) => {
  t.equal(loadConfig(Schema, { PORT: '' }).PORT, 3000)
})

t.test('malformed values stop start-up naming each variable', async (t) => {
  const err = t.throws(() => loadConfig(Schema, { PORT: 'abc', LOG_LEVEL: 'loud', REDIS_URL: 'http://x', UPSTREAMS: 'ftp://a' })) as ConfigError
  t.type(err, ConfigError)
  t.match(err.message, /PORT: .*"abc"/)
  t.match(err.message, /LOG_LEVEL: must be one of fatal, error/)
  t.match(err.message, /REDIS_URL:/)
  t.match(err.message, /UPSTREAMS:/)
  t.throws(() => loadConfig(Schema, { PORT: '70000' }), /PORT/)
  t.throws(() => loadConfig(Schema, { ADMIN_TOKEN: 'short' }), /ADMIN_TOKEN/)
})

t.test('list splits comma-separated values', async (t) => {
  t.same(list(' http://a:1, http://b:2 ,'), ['http://a:1', 'http://b:2'])
  t.same(list(undefined), [])
})
