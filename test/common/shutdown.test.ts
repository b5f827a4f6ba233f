/**
 * The one graceful exit (common/shutdown.ts, close-with-grace) with real
 * processes: a signal runs the close once and exits 0, a close that does not
 * finish is cut at its bound with exit 1, an uncaught error closes and exits 1,
 * a supervisor going away closes the child, a second signal exits at once, and
 * the same signal delivered twice within a moment is one.
 */
import t from 'tap'
import { fork } from 'node:child_process'
import { once } from 'node:events'
import path from 'node:path'
import { ROOT, spawnScript, waitForLine } from '../helpers/spawn.js'
import { REPEAT_WINDOW_MS } from '../../common/shutdown.js'

const child = 'test/helpers/shutdown-child.ts'

t.test('SIGTERM runs the close once, then exits 0', async (t) => {
  const run = spawnScript(child, {})
  t.teardown(() => { run.child.kill('SIGKILL') })
  t.ok(await waitForLine(run, /ready/, 30_000), 'started')
  run.child.kill('SIGTERM')
  t.equal(await run.exited, 0)
  t.match(run.output(), /close SIGTERM\nclosed\n/)
  t.equal(run.output().match(/close SIGTERM/g)?.length, 1)
})

t.test('a close that does not finish is cut at its bound, exit 1', async (t) => {
  const run = spawnScript(child, { CLOSE: 'hang', DELAY_MS: '300' })
  t.teardown(() => { run.child.kill('SIGKILL') })
  t.ok(await waitForLine(run, /ready/, 30_000), 'started')
  run.child.kill('SIGTERM')
  t.equal(await run.exited, 1)
  t.match(run.output(), /error graceful close did not finish within 300 ms/)
  t.notMatch(run.output(), /closed/)
})

t.test('an uncaught error is logged, the close runs, exit 1', async (t) => {
  const run = spawnScript(child, { THROW: '1' })
  t.teardown(() => { run.child.kill('SIGKILL') })
  t.equal(await run.exited, 1)
  t.match(run.output(), /error uncaught error: closing\nclose error\nclosed\n/)
})

t.test('a second signal while closing exits at once', async (t) => {
  const run = spawnScript(child, { CLOSE_MS: '20000', DELAY_MS: '30000' })
  t.teardown(() => { run.child.kill('SIGKILL') })
  t.ok(await waitForLine(run, /ready/, 30_000), 'started')
  run.child.kill('SIGINT')
  t.ok(await waitForLine(run, /close SIGINT/, 30_000), 'closing')
  // A person's second Ctrl-C, not the first one delivered twice (below).
  await new Promise((resolve) => setTimeout(resolve, REPEAT_WINDOW_MS + 200))
  const began = Date.now()
  run.child.kill('SIGINT')
  t.equal(await run.exited, 1)
  t.ok(Date.now() - began < 10_000, 'without waiting for the close')
  t.match(run.output(), /second SIGINT while closing/)
})

t.test('one Ctrl-C delivered twice (to the process group by the terminal, again by npm run) closes once, in full', async (t) => {
  const run = spawnScript(child, { CLOSE_MS: '1500', DELAY_MS: '30000' })
  t.teardown(() => { run.child.kill('SIGKILL') })
  t.ok(await waitForLine(run, /ready/, 30_000), 'started')
  run.child.kill('SIGINT')
  run.child.kill('SIGINT')
  await new Promise((resolve) => setTimeout(resolve, 300))
  run.child.kill('SIGINT') // a copy that comes late (a launcher that relays after waiting) is still within the window
  t.equal(await run.exited, 0, 'the close ran to its end')
  t.match(run.output(), /close SIGINT\nclosed\n/)
  t.equal(run.output().match(/close SIGINT/g)?.length, 1, 'once')
  t.notMatch(run.output(), /second SIGINT/)
})

t.test('a child whose supervisor goes away (IPC disconnect) closes and exits 0', async (t) => {
  const proc = fork(path.join(ROOT, child), [], { cwd: ROOT, execArgv: ['--import', 'tsx'], stdio: ['ignore', 'pipe', 'pipe', 'ipc'] })
  t.teardown(() => { proc.kill('SIGKILL') })
  let out = ''
  proc.stdout!.on('data', (d) => { out += d })
  const exited = once(proc, 'exit')
  for (let i = 0; i < 300 && !out.includes('ready'); i++) await new Promise((resolve) => setTimeout(resolve, 100))
  t.match(out, /ready/)
  proc.disconnect()
  const [code] = await exited
  t.equal(code, 0)
  t.match(out, /close disconnect\nclosed\n/)
})
