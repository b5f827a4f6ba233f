/**
 * A failover drill on `npm run cluster` with its own database (a `database`
 * section: Patroni, etcd, HAProxy; scripts/database-cluster.ts): starts the
 * cluster on free ports in a temporary folder, puts visitors on it (form
 * posts from several loopback source addresses, cached and uncached reads),
 * breaks the database leader in the ways a production one breaks, and
 * measures each write outage. Shared by the fault test
 * (test/scripts/database-cluster.test.ts) and `npm run bench:failover`.
 */
import { execFile } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import { freePorts } from '../../common/free-port.js'
import { anyMembers, databaseLayout, databaseUrls, healthy, memberName, until, type DatabaseLayout, type DatabasePorts } from '../../scripts/database-cluster.js'
import { postmasterPid } from '../../scripts/streaming-replica.js'
import { requestFrom } from './source-address.js'
import { spawnScript, waitForLine, type Spawned } from './spawn.js'

export type Fault = 'postmaster' | 'lost-node' | 'switchover'

export interface Drill {
  base: string
  ports: DatabasePorts
  stateDir: string
  layout: DatabaseLayout
  run: Spawned
  /** The roles' own ports (name → port), for their /-/health. */
  roles: Record<string, number>
  /** The cluster's PID record. */
  pids (): Promise<Record<string, number>>
  /** The leader's member name (pg1, pg2), once there is exactly one. */
  leader (): Promise<string>
  /**
   * Waits until one leader (not `former`) and a synchronous standby (every
   * commit is flushed there before it is acknowledged); answers the leader.
   */
  whole (timeoutMs: number, former?: string): Promise<string>
  /** Breaks the leader; answers when it was broken (ms) and which member it was. */
  fault (kind: Fault): Promise<{ at: number, leader: string }>
  /** Stops the cluster (SIGTERM); its exit code. */
  stop (): Promise<number | null>
  remove (): Promise<void>
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** Starts the cluster (one cache, one frontend, two backends, one mailer: every role, few processes) on its own Patroni pair. */
export async function startDrill (env: Record<string, string | undefined> = {}): Promise<Drill> {
  const dir = await mkdtemp(path.join(tmpdir(), 'fc-failover-'))
  // Patroni and etcd run as the postgres user: it must reach its folders inside this one.
  await chmod(dir, 0o755)
  const [front, cache, f1, b1, b2, mailer, replica, stats, pg1, pg2, r1, r2, etcd, write, read] = await freePorts(15)
  const ports: DatabasePorts = { postgres: [pg1, pg2], patroni: [r1, r2], etcd, write, read }
  const configFile = path.join(dir, 'cluster.json')
  await writeFile(configFile, JSON.stringify({ front, caches: [cache], frontends: [f1], backends: [b1, b2], mailers: [mailer], replica, haproxyStats: stats, database: ports }))
  const run = spawnScript('scripts/cluster.ts', {
    CLUSTER_CONFIG: configFile,
    FLASHCROWD_STATE_DIR: dir,
    REDIS_URL: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379',
    // Pages and bus events of this cluster only.
    REDIS_PREFIX: `failover-${path.basename(dir)}`,
    LOG_LEVEL: 'warn',
    ADMIN_TOKEN: 'failover-drill-admin-token',
    ...env
  })
  const stateDir = path.join(dir, 'cluster', String(front))
  const layout = databaseLayout(stateDir, ports)
  const remove = async () => {
    if (run.child.exitCode === null && run.child.signalCode === null) {
      run.child.kill('SIGTERM')
      await run.exited
    }
    await rm(dir, { recursive: true, force: true })
  }
  const base = await waitForLine(run, /FLASHCROWD_URL=(\S+)/, 150_000)
  if (!base) {
    await remove()
    throw new Error(`the cluster did not come up:\n${run.output().slice(-5000)}`)
  }

  const pids = async () => JSON.parse(await readFile(path.join(stateDir, 'pids.json'), 'utf8')) as Record<string, number>
  const leaderOf = async () => {
    const leaders = (await anyMembers(ports))?.filter((m) => m.role === 'leader' && m.state === 'running') ?? []
    return leaders.length === 1 ? leaders[0].name : undefined
  }
  const drill: Drill = {
    base,
    ports,
    stateDir,
    layout,
    run,
    roles: { cache1: cache, frontend1: f1, backend1: b1, backend2: b2, mailer1: mailer },
    pids,
    leader: () => until('one leader', leaderOf, 60_000),
    whole: (timeoutMs, former) => until(`a leader${former ? ` other than ${former}` : ''} and a synchronous standby`, async () => {
      const members = await anyMembers(ports)
      if (!healthy(members, ports.postgres.length)) return undefined
      const leader = members!.find((m) => m.role === 'leader')!.name
      return leader === former ? undefined : leader
    }, timeoutMs),
    async fault (kind) {
      const leader = await drill.leader()
      const i = Number(leader.slice(2)) - 1
      if (kind === 'switchover') {
        const candidate = memberName(1 - i)
        const at = Date.now()
        await promisify(execFile)('patronictl', ['-c', layout.patroniConfigs[i], 'switchover', '--leader', leader, '--candidate', candidate, '--force'], { timeout: 60_000 })
        return { at, leader }
      }
      const postmaster = postmasterPid(layout.dataDirs[i])
      if (postmaster === undefined) throw new Error(`no postmaster.pid in ${layout.dataDirs[i]}`)
      const at = Date.now()
      // A lost node: its Patroni dies first, so nothing restarts or hands over its postmaster.
      if (kind === 'lost-node') process.kill((await pids())[`patroni${i + 1}`], 'SIGKILL')
      process.kill(postmaster, 'SIGKILL')
      return { at, leader }
    },
    async stop () {
      run.child.kill('SIGTERM')
      return await run.exited
    },
    remove
  }
  return drill
}

/** The database the roles use, on the leader (through the write router). */
export const drillDatabaseUrl = (drill: Drill) => databaseUrls(drill.ports).write

export interface WriteRecord { text: string, sentAt: number, ackAt: number }

export interface VisitorLoad {
  /** Acknowledged writes (303), in acknowledgement order. */
  acked: WriteRecord[]
  /** Answers that were neither the write's answer (303) nor a 503 with Retry-After. */
  badWrites: string[]
  /** 503s with Retry-After (the visitor retried the same form). */
  retried: number
  cached: { ok: number, failed: string[] }
  uncached: { ok: number, failed: string[] }
  stop (): Promise<void>
}

/**
 * Visitors: `writers` form posts from as many source addresses (127.0.0.2…),
 * each resending the same form (same nonce) after a 503 until it is
 * acknowledged, as a person would; two readers of pages warmed in the cache;
 * one reader of pages the cache does not hold (a query string of its own).
 */
export async function startVisitors (base: string, options: { writers: number, author: string }): Promise<VisitorLoad> {
  const newsHtml = (await requestFrom('127.0.0.1', `${base}/news`)).body
  const articles = [...new Set([...newsHtml.matchAll(/href="\/news\/([a-z0-9-]+)"/g)].map((m) => m[1]))]
  if (articles.length < 8) throw new Error('too few news articles on /news')
  // Comments go to four articles, which each comment purges; the cached reads are of pages no write touches.
  const slugs = articles.slice(0, 4)
  const pages = ['/', '/news', '/tutorials', ...articles.slice(4, 8).map((s) => `/news/${s}`)]
  const uncachedPages = slugs.map((s) => `/news/${s}`)
  for (let i = 0; i < 3; i++) for (const p of pages) await requestFrom('127.0.0.1', base + p)

  let running = true
  const load: VisitorLoad = {
    acked: [],
    badWrites: [],
    retried: 0,
    cached: { ok: 0, failed: [] },
    uncached: { ok: 0, failed: [] },
    stop: async () => { running = false; await Promise.all(loops) }
  }
  const writer = async (w: number) => {
    const source = `127.0.0.${2 + w}`
    for (let n = 0; running; n++) {
      const text = `${options.author} ${w}-${n} ${randomBytes(4).toString('hex')}`
      const slug = slugs[n % slugs.length]
      const form = new URLSearchParams({ author: options.author, body: text, form_nonce: randomBytes(16).toString('hex') }).toString()
      const sentAt = Date.now()
      // The same form again after a 503, until it is acknowledged (or the drill ends).
      for (;;) {
        try {
          const res = await requestFrom(source, `${base}/news/${slug}/comments`, {
            method: 'POST', body: form,
            headers: { 'content-type': 'application/x-www-form-urlencoded', origin: base }
          })
          if (res.status === 303) { load.acked.push({ text, sentAt, ackAt: Date.now() }); break }
          if (res.status === 503 && res.headers['retry-after'] !== undefined) {
            load.retried++
            if (!running) break
            await sleep(250)
            continue
          }
          load.badWrites.push(`${res.status} ${res.body.slice(0, 200)}`)
        } catch (err) {
          load.badWrites.push((err as Error).message)
        }
        break
      }
      await sleep(50)
    }
  }
  const reader = async (source: string, uncached: boolean) => {
    const tally = uncached ? load.uncached : load.cached
    for (let n = 0; running; n++) {
      // Uncached: the articles being commented on (purged by every comment) and pages under a query string of their own.
      const page = uncached
        ? n % 2 === 0 ? uncachedPages[n % uncachedPages.length] : `${pages[n % pages.length]}?drill=${n}-${randomBytes(3).toString('hex')}`
        : pages[n % pages.length]
      try {
        const res = await requestFrom(source, base + page)
        if (res.status === 200) tally.ok++
        else tally.failed.push(`${page} → ${res.status}`)
      } catch (err) {
        tally.failed.push(`${page} → ${(err as Error).message}`)
      }
      await sleep(uncached ? 80 : 20)
    }
  }
  const loops = [
    ...Array.from({ length: options.writers }, (_, w) => writer(w)),
    reader('127.0.0.100', false), reader('127.0.0.101', false), reader('127.0.0.102', true)
  ]
  return load
}

/**
 * A write outage: the longest time without an acknowledgement from the last
 * one before `at` until `settledAt` (the last acknowledged write before the
 * fault → the first after it; a write acknowledged just after the fault that
 * committed before it does not hide the gap that follows). Infinity when no
 * write was acknowledged after the fault by `settledAt`.
 */
export function writeOutage (ackTimes: number[], at: number, settledAt: number): number {
  const sorted = [...ackTimes].sort((a, b) => a - b)
  const before = sorted.filter((t) => t <= at).pop()
  const after = sorted.filter((t) => t > at && t <= settledAt)
  if (before === undefined || after.length === 0) return Infinity
  let longest = 0
  let previous = before
  for (const t of after) { longest = Math.max(longest, t - previous); previous = t }
  return longest
}

export interface HealthWatch {
  /** Answers per role and status (`200 degraded`, `503`, `error`…). */
  seen: Record<string, Record<string, number>>
  stop (): Promise<void>
}

/** Asks every role's /-/health every `intervalMs` and tallies the answers (status and the body's `status`). */
export function watchHealth (roles: Record<string, number>, intervalMs = 250): HealthWatch {
  const seen: Record<string, Record<string, number>> = {}
  let running = true
  const loops = Object.entries(roles).map(async ([name, port]) => {
    const tally: Record<string, number> = (seen[name] = {})
    while (running) {
      let answer: string
      try {
        const res = await requestFrom('127.0.0.1', `http://127.0.0.1:${port}/-/health`)
        let status = ''
        try { status = String((JSON.parse(res.body) as { status?: unknown }).status ?? '') } catch { /* not JSON */ }
        answer = `${res.status}${status ? ` ${status}` : ''}`
      } catch (err) {
        answer = `error ${(err as Error).message}`
      }
      tally[answer] = (tally[answer] ?? 0) + 1
      await sleep(intervalMs)
    }
  })
  return { seen, stop: async () => { running = false; await Promise.all(loops) } }
}
