import t from 'tap'
import { readFileSync } from 'node:fs'
import path from 'node:path'
import { ROOT } from '../helpers/spawn.js'
import { allEnvVars } from '../../scripts/env-doc.js'

t.test('README and .env.example document every variable of every schema', async (t) => {
  const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8')
  const example = readFileSync(path.join(ROOT, '.env.example'), 'utf8')
  const vars = allEnvVars()
  t.ok(vars.length > 20)
  for (const v of vars) {
    t.ok(v.description.length > 0, `${v.name} has a description`)
    t.match(readme, `\`${v.name}\``, `README names ${v.name}`)
    t.match(example, new RegExp(`^# ${v.name}=`, 'm'), `.env.example names ${v.name}`)
  }
  for (const name of ['HOST', 'PORT', 'DATABASE_URL', 'DATABASE_READ_URL', 'REDIS_URL', 'UPSTREAMS', 'BACKEND_URL', 'ADMIN_TOKEN', 'CACHE_MAX_BYTES']) {
    t.ok(vars.some((v) => v.name === name), `the contract's ${name} is read by some role`)
  }
})
