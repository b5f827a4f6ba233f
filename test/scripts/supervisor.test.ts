/**
 * The supervisor's start-up verdicts with real child processes: a role that
 * refuses its configuration is not restarted in a loop, and its start fails at
 * once, saying why.
 */
import t from 'tap'
import { Supervisor, createLogWriter } from '../../scripts/supervisor.js'
import { freePort } from '../../common/free-port.js'

const quiet = () => {}

t.test('a role that refuses its configuration fails the start at once, without restarts', async (t) => {
  const supervisor = new Supervisor({ log: quiet })
  t.teardown(() => supervisor.stop([]))
  const port = await freePort()
  const began = Date.now()
  const error = await supervisor.start({
    name: 'backend',
    script: 'backend/server.ts',
    env: { PORT: String(port), BACKEND_BODY_LIMIT: 'a lot' },
    healthUrl: `http://127.0.0.1:${port}/-/health`
  }, 60_000).then(() => undefined, (err: Error) => err)
  t.ok(error, 'the start is refused')
  t.match(error?.message, /backend did not become healthy .*refused its configuration/)
  t.equal(supervisor.restarts('backend'), 0, 'not restarted')
  t.ok(Date.now() - began < 30_000, `refused in ${Date.now() - began} ms, not after the restart back-off`)
})

t.test('a role that keeps crashing fails the start after a few restarts, naming its exit', async (t) => {
  const supervisor = new Supervisor({ log: quiet })
  t.teardown(() => supervisor.stop([]))
  const port = await freePort()
  const error = await supervisor.start({
    name: 'crasher',
    command: [process.execPath, '-e', 'process.exit(7)'],
    env: {},
    healthUrl: `http://127.0.0.1:${port}/-/health`
  }, 60_000).then(() => undefined, (err: Error) => err)
  t.match(error?.message, /crasher did not become healthy .*exited 4 times \(last: code 7\)/)
})

t.test('JSON log lines carry the supervisor\'s name for the process (cache2), over the role\'s own', async (t) => {
  const write = await createLogWriter(false)
  const lines: string[] = []
  const real = process.stdout.write.bind(process.stdout)
  process.stdout.write = ((chunk: string) => { lines.push(String(chunk)); return true }) as typeof process.stdout.write
  try {
    write('cache2', JSON.stringify({ role: 'cache', level: 30, msg: 'listening' }), 'out')
    write('backend1', JSON.stringify({ level: 30, msg: 'listening' }), 'out')
  } finally {
    process.stdout.write = real
  }
  t.same(lines.map((l) => JSON.parse(l)), [{ role: 'cache2', level: 30, msg: 'listening' }, { role: 'backend1', level: 30, msg: 'listening' }])
})
