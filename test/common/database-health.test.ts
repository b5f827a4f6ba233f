import t from 'tap'
import { createDatabase } from '../../common/db.js'
import { DatabaseHealth, healthStatus } from '../../common/database-health.js'
import { eachDatabase } from '../helpers/database.js'
import { startTcpProxy } from '../helpers/tcp-proxy.js'

eachDatabase(t, 'a database that stops answering is failing over, then down', async (t, database) => {
  const proxy = await startTcpProxy(Number(new URL(database.url).port))
  t.teardown(proxy.close)
  const handle = createDatabase({ url: proxy.url(database.url), connectTimeoutMs: 3000 })
  t.teardown(handle.close)
  await handle.pool.query('select 1') // the first connection (a loaded embedded server can take a second)
  let clock = 1_000_000
  const health = new DatabaseHealth({ database: handle, failoverMs: 5000, writable: true, timeoutMs: 3000, now: () => clock })
  t.same(await health.check(), { state: 'up' })
  t.same(healthStatus({ state: 'up' }), { code: 200, status: 'ok' })

  await proxy.cut()
  clock += 1000
  const failing = await health.check()
  t.equal(failing.state, 'failing-over', 'silent for less than failoverMs after its last answer')
  t.equal(failing.since, new Date(clock).toISOString())
  t.same(healthStatus(failing), { code: 200, status: 'degraded' }, 'the role stays in its load balancer')
  clock += 5000
  const down = await health.check()
  t.equal(down.state, 'down', 'silent for longer')
  t.equal(down.since, new Date(clock - 5000).toISOString(), 'since its first failed check')
  t.equal(healthStatus(down).code, 503)

  await proxy.restore()
  let state = ''
  for (let i = 0; i < 50 && state !== 'up'; i++) {
    state = (await health.check()).state
    if (state !== 'up') await new Promise((resolve) => setTimeout(resolve, 100))
  }
  t.equal(state, 'up', 'up again by itself')
})

t.test('never answered: down at once', async (t) => {
  const handle = createDatabase({ url: 'postgres://postgres@127.0.0.1:1/none', connectTimeoutMs: 300 })
  t.teardown(handle.close)
  t.same(await new DatabaseHealth({ database: handle, failoverMs: 60_000 }).check(), { state: 'down' })
})
