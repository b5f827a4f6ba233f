import t from 'tap'
import { readFileSync } from 'node:fs'
import path from 'node:path'
import { ROOT } from '../helpers/spawn.js'
import { CONFIGURATION_DOC, allEnvVars, example, withTable } from '../../scripts/env-doc.js'

t.test('docs/configuration.md and .env.example document every variable of every schema', async (t) => {
  const doc = readFileSync(path.join(ROOT, CONFIGURATION_DOC), 'utf8')
  const env = readFileSync(path.join(ROOT, '.env.example'), 'utf8')
  const vars = allEnvVars()
  t.ok(vars.length > 20)
  for (const v of vars) {
    t.ok(v.description.length > 0, `${v.name} has a description`)
    t.match(doc, `| \`${v.name}\` |`, `the table names ${v.name}`)
    t.match(env, new RegExp(`^# ${v.name}=`, 'm'), `.env.example names ${v.name}`)
  }
  // Exactly what the schemas give (run `npm run env-doc -- --write` after changing one).
  t.equal(withTable(doc), doc, 'the table is the generated one')
  t.equal(env, example(), '.env.example is the generated one')
  for (const name of ['HOST', 'PORT', 'DATABASE_URL', 'DATABASE_READ_URL', 'REDIS_URL', 'UPSTREAMS', 'BACKEND_URL', 'ADMIN_TOKEN', 'CACHE_MAX_BYTES']) {
    t.ok(vars.some((v) => v.name === name), `the contract's ${name} is read by some role`)
  }
})
