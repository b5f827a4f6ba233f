/**
 * `npm start` as a new user runs it: the whole tier from nothing (embedded
 * database, embedded bus), pages through the cache, a comment end to end,
 * a sign-up's e-mail in the state folder, Ctrl-C, nothing left running.
 */
import t from 'tap'
import http, { type IncomingMessage } from 'node:http'
import { execFileSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { spawnScript, waitForLine, portRefused } from '../helpers/spawn.js'
import { freePort } from '../../common/free-port.js'


function descendants (pid: number): number[] {
  try {
    const out = execFileSync('ps', ['-e', '-o', 'pid=,ppid='], { encoding: 'utf8' })
    const rows = out.trim().split('\n').map((l) => l.trim().split(/\s+/).map(Number))
    const found: number[] = []
    const walk = (p: number) => { for (const [c, pp] of rows) if (pp === p) { found.push(c); walk(c) } }
    walk(pid)
    return found
  } catch { return [] }
}

/** Running (a zombie waiting for its parent to reap it counts as gone). */
function alive (pid: number): boolean {
  try {
    const stat = execFileSync('ps', ['-o', 'stat=', '-p', String(pid)], { encoding: 'utf8' }).trim()
    return stat !== '' && !stat.startsWith('Z')
  } catch { return false }
}

t.test('npm start: pages through the cache, a comment end to end, a clean Ctrl-C', async (t) => {
  const stateDir = await mkdtemp(path.join(tmpdir(), 'fc-start-'))
  t.teardown(() => rm(stateDir, { recursive: true, force: true }))
  const port = await freePort()
  const began = Date.now()
  const run = spawnScript('scripts/start.ts', { PORT: String(port), FLASHCROWD_STATE_DIR: stateDir, LOG_LEVEL: 'warn' })
  t.teardown(() => { for (const pid of descendants(run.child.pid!)) { try { process.kill(pid, 'SIGKILL') } catch {} } run.child.kill('SIGKILL') })
  const base = await waitForLine(run, /FLASHCROWD_URL=(\S+)/, 90_000)
  t.ok(base, `the tier came up (output: ${run.output().slice(-2000)})`)
  if (!base) return
  t.comment(`first start: ${((Date.now() - began) / 1000).toFixed(1)} s to the URL line`)

  const first = await fetch(`${base}/news`)
  t.equal(first.status, 200)
  const html = await first.text()
  // A new connection for the second view, as two curl calls or two visitors make.
  const second = await new Promise<IncomingMessage>((resolve, reject) => { http.get(`${base}/news`, { agent: false }, resolve).on('error', reject) })
  second.resume()
  t.equal(second.headers['x-cache'], 'HIT', 'the second view (another connection) is a cache hit')

  const slug = /href="\/news\/([a-z0-9-]+)"/.exec(html)?.[1]
  t.ok(slug, 'the news index links to articles')
  const page = `${base}/news/${slug}`
  await (await fetch(page)).arrayBuffer()
  await (await fetch(page)).arrayBuffer() // cached now: the comment must purge it

  const text = `Posted through the cache ${Date.now()}`
  const posted = await fetch(`${page}/comments`, {
    method: 'POST',
    redirect: 'manual',
    headers: { 'content-type': 'application/x-www-form-urlencoded', origin: base },
    body: new URLSearchParams({ author: 'E2E Tester', body: text, form_nonce: randomBytes(16).toString('hex') }).toString()
  })
  t.equal(posted.status, 303)
  const location = posted.headers.get('location')
  t.ok(location)
  const after = await fetch(new URL(location!, base))
  t.match(await after.text(), text, 'the author sees the comment on the redirect')

  const deadline = Date.now() + 1000
  let seen = false
  while (!seen && Date.now() < deadline) {
    seen = (await (await fetch(page)).text()).includes(text)
    if (!seen) await new Promise((resolve) => setTimeout(resolve, 50))
  }
  t.ok(seen, 'another visitor sees it within 1 s (the purge reached the cache)')

  // An event sign-up through the site: without SMTP_URL its confirmation lands in the state folder, where npm start said.
  const mailFolder = path.join(stateDir, 'mail')
  t.match(run.output(), `messages are kept as .eml files in ${mailFolder}`, 'npm start says where the e-mail goes')
  const signup = await fetch(`${base}/events`, {
    method: 'POST',
    redirect: 'manual',
    headers: { 'content-type': 'application/x-www-form-urlencoded', origin: base },
    body: new URLSearchParams({
      organizer: 'E2E Organizer', email: 'organizer@e2e.example', school: 'E2E <School>', country: 'NZ', city: 'Wellington',
      expectedParticipants: '30', eventDate: new Date(Date.now() + 10 * 86_400_000).toISOString().slice(0, 10), form_nonce: randomBytes(16).toString('hex')
    }).toString()
  })
  t.equal(signup.status, 303)
  let eml: string | undefined
  for (let i = 0; i < 300 && eml === undefined; i++) {
    const files = await readdir(mailFolder).catch(() => [] as string[])
    for (const f of files.filter((x) => x.endsWith('.eml'))) {
      const raw = await readFile(path.join(mailFolder, f), 'utf8')
      if (raw.includes('organizer@e2e.example')) eml = raw
    }
    if (eml === undefined) await new Promise((resolve) => setTimeout(resolve, 100))
  }
  t.ok(eml, 'the confirmation was written to the mail folder')
  t.match(eml ?? '', /Subject: Your Hour of Code event at E2E <School> is registered/)

  const children = descendants(run.child.pid!)
  t.ok(children.length >= 3, `roles run as separate processes (${children.length})`)
  run.child.kill('SIGINT')
  t.equal(await run.exited, 0, 'Ctrl-C exits cleanly')
  // Helpers of the roles (tsx's esbuild service) exit right after their parent: allow them a moment.
  for (let i = 0; i < 50 && children.some(alive); i++) await new Promise((resolve) => setTimeout(resolve, 100))
  t.same(children.filter(alive), [], 'no process left running')
  t.ok(await portRefused(port), 'the port is released')
})

t.test('npm start on a port already in use exits non-zero at once, naming the port', async (t) => {
  const stateDir = await mkdtemp(path.join(tmpdir(), 'fc-start-'))
  t.teardown(() => rm(stateDir, { recursive: true, force: true }))
  const blocker = http.createServer()
  await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => blocker.close(() => resolve())))
  const port = (blocker.address() as { port: number }).port
  const run = spawnScript('scripts/start.ts', { PORT: String(port), FLASHCROWD_STATE_DIR: stateDir, LOG_LEVEL: 'warn' })
  t.teardown(() => { run.child.kill('SIGKILL') })
  t.equal(await run.exited, 1, 'exit code 1')
  t.match(run.output(), new RegExp(`port ${port} on 127\\.0\\.0\\.1 is already in use`))
})

t.test('npm start with a database it cannot reach exits non-zero, saying why', async (t) => {
  const stateDir = await mkdtemp(path.join(tmpdir(), 'fc-start-'))
  t.teardown(() => rm(stateDir, { recursive: true, force: true }))
  const [port, nothing] = [await freePort(), await freePort()]
  const run = spawnScript('scripts/start.ts', { PORT: String(port), FLASHCROWD_STATE_DIR: stateDir, LOG_LEVEL: 'warn', DATABASE_URL: `postgres://postgres@127.0.0.1:${nothing}/none` })
  t.teardown(() => { run.child.kill('SIGKILL') })
  t.equal(await run.exited, 1, 'exit code 1')
  t.match(run.output(), /start-up failed: .*ECONNREFUSED/)
  t.ok(await portRefused(port), 'nothing listens on the public port')
})

t.test('npm start takes no arguments: --help prints the usage, anything else is refused with it, and nothing starts', async (t) => {
  const help = spawnScript('scripts/start.ts', { LOG_LEVEL: 'warn' }, ['--help'])
  t.teardown(() => { help.child.kill('SIGKILL') })
  t.equal(await help.exited, 0)
  t.match(help.output(), /^usage: npm start\n/)
  const wrong = spawnScript('scripts/start.ts', { LOG_LEVEL: 'warn' }, ['--port', '9000'])
  t.teardown(() => { wrong.child.kill('SIGKILL') })
  t.equal(await wrong.exited, 2)
  t.match(wrong.output(), /npm start takes no arguments \(got "--port 9000"\)\nusage: npm start/)
})
