/**
 * `npm run bench:signup-rush`: the sign-up rush end to end, as a visitor
 * makes it (the cache, the frontend's forms with Post/Redirect/Get, the
 * backend's group commit into PostgreSQL), at the same offered load twice:
 * with the mailer stopped, then with the mailer sending every confirmation
 * through a real SMTP server (smtp-server, bench/smtp-sink.ts) while the
 * load runs. Every sign-up and every completion of the `signup-rush` mix leaves
 * an address, so each write queues one message.
 *
 * Prints writes/s and the sign-up p99 of both runs side by side, then
 * checks the mail: as many messages received as writes queued, each
 * queued Message-ID received, none twice.
 *
 * Options: --messages n (writes with an address per run, default 10000),
 *          --rate r (offered requests/s, default 400), --mailers n (default 1),
 *          --rounds n (off/on pairs, alternating, default 2: the spread between
 *          rounds is the noise the on/off difference is read against)
 * Uses DATABASE_URL (default: the local PostgreSQL, scratch database) and
 * REDIS_URL (default: the local Redis, own key prefix).
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { parseArgs } from 'node:util'
import { setPriority } from 'node:os'
import { freePort } from '../common/free-port.js'
import { waitHealthy } from '../scripts/supervisor.js'
import { runLoadTest } from '../loadtest/run.js'
import { BUILTIN_SCENARIOS, validateScenario } from '../loadtest/scenarios.js'
import type { Summary } from '../loadtest/report-json.js'
import { scratchDatabase } from './scratch-db.js'
import { buildDist } from './tools.js'

const { values } = parseArgs({ options: { messages: { type: 'string', default: '10000' }, rate: { type: 'string', default: '400' }, mailers: { type: 'string', default: '1' }, rounds: { type: 'string', default: '2' } } })
const MESSAGES = Number(values.messages)
const RATE = Number(values.rate)
const MAILERS = Number(values.mailers)
const ROUNDS = Number(values.rounds)
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'

// The rush's own mix, held at one rate (no ramp): both runs offer the same load for the same time.
const rush = BUILTIN_SCENARIOS['signup-rush']
const scenario = validateScenario({ name: 'signup-rush (steady)', stages: [{ name: 'rush', duration: '100%', to: '100%' }], mix: rush.mix }, 'signup-rush')
const writeShare = rush.mix.filter((m) => m.action === 'signup' || m.action === 'completion').reduce((s, m) => s + m.weight, 0) /
  rush.mix.reduce((s, m) => s + m.weight, 0)
const DURATION = Math.ceil(MESSAGES / (RATE * writeShare))

const children: ChildProcess[] = []

interface Role { child: ChildProcess, port: number }

async function startRole (role: string, env: Record<string, string>): Promise<Role> {
  const port = await freePort()
  const child = spawn(process.execPath, [`dist/${role}/server.js`], { env: { ...process.env, ...env, PORT: String(port), HOST: '127.0.0.1', LOG_LEVEL: 'warn' }, stdio: ['ignore', 'ignore', 'inherit'] })
  children.push(child)
  if (!await waitHealthy(`http://127.0.0.1:${port}/-/health`, 30_000, () => child.exitCode !== null)) {
    throw new Error(child.exitCode !== null ? `${role} exited with ${child.exitCode}` : `${role} did not come up`)
  }
  return { child, port }
}

async function stop (c: ChildProcess): Promise<void> {
  if (c.exitCode !== null) return
  c.kill('SIGTERM')
  await new Promise((resolve) => c.once('exit', resolve))
}

interface RunFigures { label: string, summary: Summary, queued: number }

function endpoint (s: Summary, name: string): Summary['endpoints'][number]['stats'] | undefined {
  return s.endpoints.find((e) => e.endpoint === name)?.stats
}

interface Sink { child: ChildProcess, port: number, ask: <T>(message: string) => Promise<T> }

async function startSink (): Promise<Sink> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'bench/smtp-sink.ts'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  children.push(child)
  const next = <T>(): Promise<T> => new Promise((resolve, reject) => {
    child.once('message', (m) => resolve(m as T))
    child.once('exit', () => reject(new Error('the SMTP sink exited')))
  })
  const { port } = await next<{ port: number }>()
  // The provider is not on the tier's machines: here it takes only the CPU the tier leaves.
  setPriority(child.pid!, 10)
  return { child, port, ask: <T>(message: string) => { const answer = next<T>(); child.send(message); return answer } }
}

interface MailCheck { queued: number, sent: number, received: number, missing: number, twice: number, drainedAfter: number, pending: number }

async function main (): Promise<void> {
  buildDist()
  const db = await scratchDatabase('rush', { tutorials: 40, news: 100, comments: 500, events: 200, completions: 100 })
  const sink = await startSink()
  const prefix = `flashcrowd:bench-rush-${process.pid}`
  try {
    const common = { DATABASE_URL: db.url, REDIS_URL, REDIS_PREFIX: prefix }
    // One machine, one source address: the per-visitor write limits would
    // refuse the crowd as one visitor, so they are off (as in bench:writes).
    const backend = await startRole('backend', { ...common, BACKEND_RATE_LIMIT_MAX: '0', BACKEND_RATE_LIMIT_SAME_MAX: '0' })
    const frontend = await startRole('frontend', { ...common, DATABASE_READ_URL: db.url, BACKEND_URL: `http://127.0.0.1:${backend.port}` })
    const cache = await startRole('cache', { ...common, UPSTREAMS: `http://127.0.0.1:${frontend.port}`, CACHE_WORKERS: '1' })
    const url = `http://127.0.0.1:${cache.port}`

    const count = async (text: string, values: unknown[] = []): Promise<number> => Number((await db.query(text, values)).rows[0].n)
    const run = async (label: string, seconds: number): Promise<RunFigures> => {
      const before = await count('select coalesce(max(id), 0) as n from mail_messages')
      const { summary } = await runLoadTest({
        scenario, url, duration: seconds, model: 'open', target: RATE, pool: Math.max(50, Math.ceil(RATE / 4)), step: 1,
        seed: 1, timeout: 10, thresholds: [], progress: null, workers: 1
      })
      return { label, summary, queued: await count('select count(*) as n from mail_messages where id > $1', [before]) }
    }

    /** A run with the mailers sending; then every message it queued must arrive once. */
    const runWithMailers = async (label: string): Promise<[RunFigures, MailCheck]> => {
      await sink.ask('reset')
      const first = await count('select coalesce(max(id), 0) as n from mail_messages')
      const mailers: Role[] = []
      for (let i = 0; i < MAILERS; i++) {
        mailers.push(await startRole('mailer', {
          DATABASE_URL: db.url, SMTP_URL: `smtp://127.0.0.1:${sink.port}`, MAILER_RATE_PER_SECOND: '0', MAILER_RATE_PER_DAY: '0',
          MAILER_POLL_MS: '100', MAILER_FROM: 'Hour of Code <no-reply@flashcrowd.localhost>'
        }))
      }
      const started = Date.now()
      const figures = await run(label, DURATION)
      // Every queued message out, however long the mailers need after the load.
      const deadline = Date.now() + 10 * 60_000
      let pending = 1
      while (Date.now() < deadline) {
        pending = await count("select count(*) as n from mail_messages where id > $1 and status in ('queued', 'sending')", [first])
        if (pending === 0) break
        await new Promise((resolve) => setTimeout(resolve, 250))
      }
      const drainedAfter = (Date.now() - started) / 1000
      for (const m of mailers) { await stop(m.child); children.splice(children.indexOf(m.child), 1) }
      const rows = (await db.query<{ message_id: string, status: string }>('select message_id, status from mail_messages where id > $1', [first])).rows
      const report = await sink.ask<{ total: number, counts: Array<[string, number]> }>('report')
      const received = new Map(report.counts)
      return [figures, {
        queued: rows.length,
        sent: rows.filter((r) => r.status === 'sent').length,
        received: report.total,
        missing: rows.filter((r) => !received.has(r.message_id)).length,
        twice: report.counts.filter(([, n]) => n > 1).length,
        drainedAfter,
        pending
      }]
    }

    console.log(`signup-rush, steady ${RATE} req/s offered (${Math.round(writeShare * 100)} % sign-ups and completions, each with an address), ${DURATION} s per run, ${ROUNDS} rounds of mailer off / on`)
    await run('warm-up', 5)
    const runs: RunFigures[] = []
    const checks: MailCheck[] = []
    for (let round = 1; round <= ROUNDS; round++) {
      // Each run's messages are its own: what an earlier run queued is gone.
      await db.query('delete from mail_messages')
      runs.push(await run(`${round}: mailer off`, DURATION))
      await db.query('delete from mail_messages')
      const [figures, check] = await runWithMailers(`${round}: mailer on (${MAILERS})`)
      runs.push(figures)
      checks.push(check)
    }

    const line = (f: RunFigures): string[] => {
      const signup = endpoint(f.summary, 'POST /events')
      const done = endpoint(f.summary, 'POST /tutorials/:slug/done')
      const writesPerSecond = (signup?.rps ?? 0) + (done?.rps ?? 0)
      return [f.label, String(f.summary.totals.requests), f.summary.totals.rps.toFixed(0), writesPerSecond.toFixed(0),
        `${signup?.latency.p99?.toFixed(1) ?? '-'} ms`, `${done?.latency.p99?.toFixed(1) ?? '-'} ms`, String(f.summary.totals.errors), String(f.queued)]
    }
    const head = ['run', 'requests', 'req/s', 'writes/s', 'sign-up p99', 'completion p99', 'errors', 'messages queued']
    const table = [head, ...runs.map(line)]
    const widths = head.map((_, i) => Math.max(...table.map((r) => r[i].length)))
    console.log('')
    for (const r of table) console.log(r.map((c, i) => i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i])).join('   '))
    const p99 = (f: RunFigures): number => endpoint(f.summary, 'POST /events')?.latency.p99 ?? NaN
    const median = (xs: number[]): number => { const v = [...xs].sort((a, b) => a - b); return v.length % 2 ? v[(v.length - 1) / 2] : (v[v.length / 2 - 1] + v[v.length / 2]) / 2 }
    const offs = runs.filter((_, i) => i % 2 === 0).map(p99)
    const ons = runs.filter((_, i) => i % 2 === 1).map(p99)
    console.log(`\nsign-up p99, median of ${ROUNDS}: mailer off ${median(offs).toFixed(1)} ms (${Math.min(...offs).toFixed(1)}–${Math.max(...offs).toFixed(1)}), on ${median(ons).toFixed(1)} ms (${Math.min(...ons).toFixed(1)}–${Math.max(...ons).toFixed(1)}): on / off ${(median(ons) / median(offs)).toFixed(2)}×`)
    let failed = false
    checks.forEach((c, i) => {
      console.log(`mail, round ${i + 1}: ${c.queued} queued, ${c.sent} sent, ${c.received} received by the SMTP server, ${c.missing} queued but never received, ${c.twice} received twice or more; all out ${c.drainedAfter.toFixed(1)} s after the run began (${DURATION} s of load)`)
      if (c.pending > 0 || c.missing > 0 || c.twice > 0 || c.received !== c.queued) failed = true
    })
    if (failed) {
      console.log('MAIL CHECK FAILED')
      process.exitCode = 1
    }
  } finally {
    for (const c of children.reverse()) await stop(c)
    await db.drop()
  }
}

await main()
