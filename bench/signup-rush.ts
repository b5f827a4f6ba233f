/**
 * `npm run bench:signup-rush`: the sign-up rush end to end, as a visitor
 * makes it (the cache, the frontend's forms with Post/Redirect/Get, the
 * backend's group commit into PostgreSQL), at the same offered load twice:
 * with the mailer stopped, then with the mailer sending every confirmation
 * through a real SMTP server (smtp-server, in this process) while the load
 * runs. Every sign-up and every completion of the `signup-rush` mix leaves
 * an address, so each write queues one message.
 *
 * Prints writes/s and the sign-up p99 of both runs side by side, then
 * checks the mail: as many messages received as writes queued, each
 * queued Message-ID received, none twice.
 *
 * Options: --messages n (writes with an address per run, default 10000),
 *          --rate r (offered requests/s, default 400), --mailers n (default 1)
 * Uses DATABASE_URL (default: the local PostgreSQL, scratch database) and
 * REDIS_URL (default: the local Redis, own key prefix).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { parseArgs } from 'node:util'
import { SMTPServer } from 'smtp-server'
import { freePort } from '../common/free-port.js'
import { runLoadTest } from '../loadtest/run.js'
import { BUILTIN_SCENARIOS, validateScenario } from '../loadtest/scenarios.js'
import type { Summary } from '../loadtest/report-json.js'
import { scratchDatabase } from './scratch-db.js'

const { values } = parseArgs({ options: { messages: { type: 'string', default: '10000' }, rate: { type: 'string', default: '400' }, mailers: { type: 'string', default: '1' } } })
const MESSAGES = Number(values.messages)
const RATE = Number(values.rate)
const MAILERS = Number(values.mailers)
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'

// The rush's own mix, held at one rate (no ramp): both runs offer the same load for the same time.
const rush = BUILTIN_SCENARIOS['signup-rush']
const scenario = validateScenario({ name: 'signup-rush (steady)', stages: [{ name: 'rush', duration: '100%', to: '100%' }], mix: rush.mix }, 'signup-rush')
const writeShare = rush.mix.filter((m) => m.action === 'signup' || m.action === 'completion').reduce((s, m) => s + m.weight, 0) /
  rush.mix.reduce((s, m) => s + m.weight, 0)
const DURATION = Math.ceil(MESSAGES / (RATE * writeShare))

const children: ChildProcess[] = []

async function startRole (role: string, env: Record<string, string>): Promise<ChildProcess> {
  const port = await freePort()
  const child = spawn(process.execPath, [`dist/${role}/server.js`], { env: { ...process.env, ...env, PORT: String(port), HOST: '127.0.0.1', LOG_LEVEL: 'warn' }, stdio: ['ignore', 'ignore', 'inherit'] })
  children.push(child)
  const deadline = Date.now() + 30_000
  for (;;) {
    if (child.exitCode !== null) throw new Error(`${role} exited with ${child.exitCode}`)
    try { if ((await fetch(`http://127.0.0.1:${port}/-/health`)).ok) break } catch { /* starting */ }
    if (Date.now() > deadline) throw new Error(`${role} did not come up`)
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  ;(child as ChildProcess & { port?: number }).port = port
  return child
}
const portOf = (c: ChildProcess): number => (c as ChildProcess & { port: number }).port

async function stop (c: ChildProcess): Promise<void> {
  if (c.exitCode !== null) return
  c.kill('SIGTERM')
  await new Promise((resolve) => c.once('exit', resolve))
}

/** The SMTP server the mailers send to: every accepted message, by Message-ID. */
function smtpSink (): { server: SMTPServer, received: Map<string, number>, total: () => number } {
  const received = new Map<string, number>()
  let total = 0
  const server = new SMTPServer({
    logger: false,
    authOptional: true,
    disabledCommands: ['STARTTLS'],
    closeTimeout: 500,
    onData (stream, _session, callback) {
      const chunks: Buffer[] = []
      stream.on('data', (c: Buffer) => chunks.push(c))
      stream.on('end', () => {
        const id = /^Message-ID:\s*(\S+)/im.exec(Buffer.concat(chunks).toString('utf8'))?.[1] ?? '(none)'
        received.set(id, (received.get(id) ?? 0) + 1)
        total++
        callback()
      })
    }
  })
  return { server, received, total: () => total }
}

interface RunFigures { label: string, summary: Summary, queued: number }

function endpoint (s: Summary, name: string): Summary['endpoints'][number]['stats'] | undefined {
  return s.endpoints.find((e) => e.endpoint === name)?.stats
}

async function main (): Promise<void> {
  const build = spawnSync(process.execPath, ['scripts/build.mjs'], { stdio: 'inherit' })
  if (build.status !== 0) throw new Error('npm run build failed')
  const db = await scratchDatabase('rush', { tutorials: 40, news: 100, comments: 500, events: 200, completions: 100 })
  const sink = smtpSink()
  await new Promise<void>((resolve) => sink.server.listen(0, '127.0.0.1', resolve))
  const smtpPort = (sink.server.server.address() as { port: number }).port
  const prefix = `flashcrowd:bench-rush-${process.pid}`
  try {
    const common = { DATABASE_URL: db.url, REDIS_URL, REDIS_PREFIX: prefix }
    // One machine, one source address: the per-visitor write limits would
    // refuse the crowd as one visitor, so they are off (as in bench:writes).
    const backend = await startRole('backend', { ...common, BACKEND_RATE_LIMIT_MAX: '0', BACKEND_RATE_LIMIT_SAME_MAX: '0' })
    const frontend = await startRole('frontend', { ...common, DATABASE_READ_URL: db.url, BACKEND_URL: `http://127.0.0.1:${portOf(backend)}` })
    const cache = await startRole('cache', { ...common, UPSTREAMS: `http://127.0.0.1:${portOf(frontend)}`, CACHE_WORKERS: '1' })
    const url = `http://127.0.0.1:${portOf(cache)}`

    const queuedSince = async (id: number): Promise<number> => Number((await db.query('select count(*) as n from mail_messages where id > $1', [id])).rows[0].n)
    const lastId = async (): Promise<number> => Number((await db.query('select coalesce(max(id), 0) as n from mail_messages')).rows[0].n)
    const run = async (label: string, seconds: number): Promise<RunFigures> => {
      const before = await lastId()
      const { summary } = await runLoadTest({
        scenario, url, duration: seconds, model: 'open', target: RATE, pool: Math.max(50, Math.ceil(RATE / 4)), step: 1,
        seed: 1, timeout: 10, thresholds: [], progress: null, workers: 1
      })
      return { label, summary, queued: await queuedSince(before) }
    }

    console.log(`signup-rush, steady ${RATE} req/s offered (${Math.round(writeShare * 100)} % sign-ups and completions, each with an address), ${DURATION} s per run`)
    await run('warm-up', 5)
    // The warm-up's messages are not part of either run.
    await db.query('delete from mail_messages')
    const off = await run('mailer off', DURATION)
    await db.query('delete from mail_messages')

    const firstOn = await lastId()
    const mailers: ChildProcess[] = []
    for (let i = 0; i < MAILERS; i++) {
      mailers.push(await startRole('mailer', {
        DATABASE_URL: db.url, SMTP_URL: `smtp://127.0.0.1:${smtpPort}`, MAILER_RATE_PER_SECOND: '0', MAILER_RATE_PER_DAY: '0',
        MAILER_POLL_MS: '100', MAILER_FROM: 'Hour of Code <no-reply@flashcrowd.localhost>'
      }))
    }
    const onStarted = Date.now()
    const on = await run(`mailer on (${MAILERS})`, DURATION)
    // Every queued message out, however long the mailers need after the load.
    const deadline = Date.now() + 10 * 60_000
    let pending = 1
    while (Date.now() < deadline) {
      pending = Number((await db.query("select count(*) as n from mail_messages where id > $1 and status in ('queued', 'sending')", [firstOn])).rows[0].n)
      if (pending === 0) break
      await new Promise((resolve) => setTimeout(resolve, 250))
    }
    const drainedAfter = (Date.now() - onStarted) / 1000
    for (const m of mailers) await stop(m)

    const rows = (await db.query<{ message_id: string, status: string }>('select message_id, status from mail_messages where id > $1', [firstOn])).rows
    const sent = rows.filter((r) => r.status === 'sent').length
    const missing = rows.filter((r) => !sink.received.has(r.message_id)).length
    const twice = [...sink.received.values()].filter((n) => n > 1).length

    const line = (f: RunFigures): string[] => {
      const signup = endpoint(f.summary, 'POST /events')
      const done = endpoint(f.summary, 'POST /tutorials/:slug/done')
      const writesPerSecond = (signup?.rps ?? 0) + (done?.rps ?? 0)
      return [f.label, String(f.summary.totals.requests), f.summary.totals.rps.toFixed(0), writesPerSecond.toFixed(0),
        `${signup?.latency.p99?.toFixed(1) ?? '-'} ms`, `${done?.latency.p99?.toFixed(1) ?? '-'} ms`, String(f.summary.totals.errors), String(f.queued)]
    }
    const head = ['run', 'requests', 'req/s', 'writes/s', 'sign-up p99', 'completion p99', 'errors', 'messages queued']
    const table = [head, line(off), line(on)]
    const widths = head.map((_, i) => Math.max(...table.map((r) => r[i].length)))
    console.log('')
    for (const r of table) console.log(r.map((c, i) => i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i])).join('   '))
    const p99 = (f: RunFigures): number => endpoint(f.summary, 'POST /events')?.latency.p99 ?? NaN
    console.log(`\nsign-up p99, mailer on / off: ${(p99(on) / p99(off)).toFixed(2)}× (the same load; target: the same within the run-to-run noise)`)
    console.log(`mail: ${rows.length} queued by the run, ${sent} sent, ${sink.total()} received by the SMTP server, ${missing} queued but never received, ${twice} received twice or more; all out ${drainedAfter.toFixed(1)} s after the run began (${DURATION} s of load)`)
    if (pending > 0 || missing > 0 || twice > 0 || sink.total() !== rows.length) {
      console.log('MAIL CHECK FAILED')
      process.exitCode = 1
    }
  } finally {
    for (const c of children.reverse()) await stop(c)
    await new Promise<void>((resolve) => sink.server.close(() => resolve()))
    await db.drop()
  }
}

await main()
