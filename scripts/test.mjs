#!/usr/bin/env node
// Runs the whole suite with tap and closes with one line: `N passed, N failed`.
// Extra arguments go to tap (e.g. `npm test -- 'test/backend/**/*.test.ts'`: a glob, as a bare folder name finds nothing).
import { spawn, spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { readFileSync } from 'node:fs'

const tapBin = fileURLToPath(new URL('../node_modules/tap/dist/esm/run.mjs', import.meta.url))
const root = fileURLToPath(new URL('..', import.meta.url))

// tap rebuilds its plugin set when package.json's tap config changes; do it
// up front so the first run on a fresh clone does not race the rebuild.
const build = spawnSync(process.execPath, [tapBin, 'build'], { stdio: ['ignore', 'ignore', 'inherit'] })
if (build.status !== 0) process.exit(build.status ?? 1)

// tap runs one file at a time on 2 cores (timing-bound files need the second
// core). A file that mostly waits — the knee search steps through fixed-length
// load stages at a few hundred requests a second, 67 s of wall time for 14 s
// of CPU — runs beside the rest instead, as a plain node process (two tap
// runners would share tap's state directory); its TAP is printed after the rest.
// The failover test (real Patroni, etcd and HAProxy) mostly waits on Patroni's timers, so it runs beside the rest as well.
// So does the two-tier CDN test (200 writes watched at two edges while a paced
// crowd reads: mostly polling and a 5 s lifetime running out; it asserts no speed).
const BESIDE = ['test/loadtest/knee.test.ts', 'test/scripts/database-cluster.test.ts', 'test/purger/two-tier.test.ts']
const SIDE_TIMEOUT_MS = 300_000

/** `# { total: 15, pass: 14, fail: 1, skip: 0 }`: tap's closing summary, from a runner or a single file. */
function counts (tail) {
  const summary = [...tail.matchAll(/#\s*\{([^}]*)\}/g)].pop()?.[1] ?? ''
  const count = (name) => Number(new RegExp(`\\b${name}:\\s*(\\d+)`).exec(summary)?.[1] ?? 0)
  return { passed: count('pass'), failed: count('fail'), skipped: count('skip') + count('todo') }
}

/** Runs a command; resolves with its exit code and the end of its output (streamed when `echo`, else kept whole). */
function run (args, echo, timeoutMs, env = process.env) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, args, { cwd: root, env, stdio: ['ignore', 'pipe', echo ? 'inherit' : 'pipe'] })
    let tail = ''
    let all = ''
    child.stdout.on('data', (chunk) => {
      if (echo) process.stdout.write(chunk)
      else all += chunk
      tail = (tail + chunk.toString('utf8')).slice(-4096)
    })
    if (!echo) child.stderr.on('data', (chunk) => { all += chunk })
    const timer = timeoutMs ? setTimeout(() => { all += `\n# killed after ${timeoutMs} ms\n`; child.kill('SIGKILL') }, timeoutMs) : undefined
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      resolve({ code: code ?? (signal ? 1 : 0), tail, all })
    })
  })
}

const args = process.argv.slice(2)
const whole = args.length === 0
// Outside tap's runner a test file takes its per-test timeout from TAP_TIMEOUT (else 30 s): the suite's setting.
const tapTimeout = String(JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')).tap?.timeout ?? 30)
const side = whole
  ? BESIDE.map((file) => run(['--import=tsx', '--import=./test/helpers/exit-when-done.mjs', file], false, SIDE_TIMEOUT_MS, { ...process.env, TAP_TIMEOUT: tapTimeout }).then((r) => ({ file, ...r })))
  : []
const main = await run([tapBin, ...(whole ? BESIDE.map((f) => `--exclude=${f}`) : args)], true)
let { passed, failed, skipped } = counts(main.tail)
// A crash before any summary still counts as a failure.
if (main.code !== 0 && failed === 0) failed = 1
let code = main.code
for (const r of await Promise.all(side)) {
  process.stdout.write(`\n# ${r.file} (run beside the rest)\n${r.all}`)
  const c = counts(r.tail)
  passed += c.passed
  skipped += c.skipped
  failed += c.failed === 0 && r.code !== 0 ? 1 : c.failed
  if (r.code !== 0) code = code || r.code
}
process.stdout.write(`\n${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}\n`)
process.exit(code)
