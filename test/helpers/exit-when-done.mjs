/**
 * Loaded into every test process (package.json tap.node-arg). Once the root
 * test has ended, with every result written, the process has nothing left
 * to report: what still holds it open (a fixture's 5-second slow answer, a
 * keep-alive socket, a server a test left to tap's teardown order) only
 * delays the suite. Measured before: 4.9 s of such waiting after 1.3 s of
 * tests in test/cache/coalesce.test.ts, and so on across the suite. Such a
 * process is ended a moment after its last result; one that ends by itself
 * is not touched (the timer is unref'd).
 *
 * Only the test file's own process: fork() and new Worker() pass
 * process.execArgv on, and what a test starts must run as it does in
 * production (nor could a child whose working directory is elsewhere find
 * this file by its relative path), so the flag takes itself out of execArgv
 * first.
 */
import { isMainThread } from 'node:worker_threads'

const at = process.execArgv.findIndex((a) => a.endsWith('exit-when-done.mjs'))
if (at >= 0) process.execArgv.splice(process.execArgv[at].startsWith('--') && process.execArgv[at].includes('=') ? at : at - 1, process.execArgv[at].includes('=') ? 1 : 2)

const entry = process.argv[1] ?? ''
if (isMainThread && /\.test\.tsx?$/.test(entry)) {
  const { default: t } = await import('tap')
  t.teardown(() => {
    setTimeout(() => { process.exit() }, 300).unref()
  })
}
