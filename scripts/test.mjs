#!/usr/bin/env node
// Runs the whole suite with tap and closes with one line: `N passed, N failed`.
// Extra arguments go to tap (e.g. `npm test -- test/backend`).
import { spawn, spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'

const tapBin = fileURLToPath(new URL('../node_modules/tap/dist/esm/run.mjs', import.meta.url))

// tap rebuilds its plugin set when package.json's tap config changes; do it
// up front so the first run on a fresh clone does not race the rebuild.
const build = spawnSync(process.execPath, [tapBin, 'build'], { stdio: ['ignore', 'ignore', 'inherit'] })
if (build.status !== 0) process.exit(build.status ?? 1)

const args = process.argv.slice(2)
const child = spawn(process.execPath, [tapBin, ...args], { stdio: ['ignore', 'pipe', 'inherit'] })
let tail = ''
child.stdout.on('data', (chunk) => {
  process.stdout.write(chunk)
  tail = (tail + chunk.toString('utf8')).slice(-4096)
})
child.on('close', (code, signal) => {
  // tap's own closing summary: `# { total: 15, pass: 14, fail: 1, skip: 0 }`
  const summary = [...tail.matchAll(/#\s*\{([^}]*)\}/g)].pop()?.[1] ?? ''
  const count = (name) => Number(new RegExp(`\\b${name}:\\s*(\\d+)`).exec(summary)?.[1] ?? 0)
  let failed = count('fail')
  const passed = count('pass')
  if (code !== 0 && failed === 0) failed = 1 // a crash before any summary still counts as a failure
  const skipped = count('skip') + count('todo')
  process.stdout.write(`\n${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}\n`)
  process.exit(code ?? (signal ? 1 : 0))
})
