import t from 'tap'
import { existsSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { spawnScript } from '../helpers/spawn.js'

t.test('npm run frontend alone never opens (and so never writes) a database', async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'fc-frontend-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const run = spawnScript('frontend/server.ts', { FLASHCROWD_STATE_DIR: dir, PORT: '0' })
  t.equal(await run.exited, 1)
  t.match(run.output(), /no database: set DATABASE_READ_URL or DATABASE_URL, or start the backend first/)
  t.notOk(existsSync(path.join(dir, 'pgdata')), 'no embedded database was created')
})

t.test('a malformed setting stops start-up naming the variable', async (t) => {
  const run = spawnScript('frontend/server.ts', { BACKEND_URL: 'not a url' })
  t.equal(await run.exited, 2)
  t.match(run.output(), /BACKEND_URL/)
})
