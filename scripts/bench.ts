// `npm run bench`: every benchmark in turn (each prints its reference beside it).
import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'

const benches: Array<[string, string]> = [
  ['writes', 'bench/backend-writes.ts'],
  ['render', 'bench/frontend-render.ts'],
  ['cache', 'bench/cache.ts'],
  ['loadtest', 'bench/loadtest.ts'],
  ['signup-rush', 'bench/signup-rush.ts']
]
let failed = 0
for (const [name, file] of benches) {
  if (!existsSync(file)) continue
  console.log(`\n=== bench:${name} ===`)
  const res = spawnSync(process.execPath, ['--import', 'tsx', file, ...process.argv.slice(2)], { stdio: 'inherit' })
  if (res.status !== 0) { failed++; console.error(`bench:${name} failed (exit ${res.status})`) }
}
process.exit(failed ? 1 : 0)
