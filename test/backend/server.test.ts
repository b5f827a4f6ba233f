import t from 'tap'
import { createTestDatabase } from '../helpers/database.js'
import { spawnScript, portRefused } from '../helpers/spawn.js'
import { freePort } from '../../common/free-port.js'
import { waitHealthy } from '../../scripts/supervisor.js'


t.test('a malformed setting stops start-up naming the variable', async (t) => {
  const run = spawnScript('backend/server.ts', { PORT: 'eighty', BACKEND_RATE_LIMIT_MAX: '-1' })
  t.equal(await run.exited, 2)
  t.match(run.output(), /PORT: .*"eighty"/)
  t.match(run.output(), /BACKEND_RATE_LIMIT_MAX/)
})

t.test('npm run backend: serves, then SIGTERM closes cleanly and frees the port', async (t) => {
  const database = await createTestDatabase(process.env.DATABASE_URL ? 'postgres' : 'embedded')
  t.teardown(database.close)
  const port = await freePort()
  const run = spawnScript('backend/server.ts', { PORT: String(port), DATABASE_URL: database.url, LOG_LEVEL: 'warn', ADMIN_TOKEN: 'x'.repeat(20) })
  t.teardown(() => { if (run.child.exitCode === null) run.child.kill('SIGKILL') })
  t.ok(await waitHealthy(`http://127.0.0.1:${port}/-/health`, 20_000), `healthy (output: ${run.output().slice(0, 500)})`)
  const res = await fetch(`http://127.0.0.1:${port}/v1/events`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' })
  t.equal(res.status, 400)
  run.child.kill('SIGTERM')
  t.equal(await run.exited, 0)
  t.ok(await portRefused(port), 'the port is released')
})
