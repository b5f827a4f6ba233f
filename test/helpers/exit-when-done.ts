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
 * Only the test file itself: processes a test spawns inherit this flag
 * (fork passes execArgv on) and must run as they do in production.
 */
const entry = process.argv[1] ?? ''
if (/\.test\.tsx?$/.test(entry)) {
  const { default: t } = await import('tap')
  t.teardown(() => {
    setTimeout(() => { process.exit() }, 300).unref()
  })
}
