/**
 * A PostgreSQL server of the test's own (initdb in a temporary folder, a
 * free port, run as the `postgres` user through runuser), so a test may
 * crash and restart it without touching the shared server. Stopped by its
 * postmaster's PID; the folder is removed at teardown.
 */
import { spawn, spawnSync } from 'node:child_process'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { appendFile, chown, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import pg from 'pg'
import { freePort } from '../../common/free-port.js'
import { postmasterPid, prepareStreamingReplica, serverUser } from '../../scripts/streaming-replica.js'

export interface PrivatePostgres {
  url: (database?: string) => string
  port: number
  /** The postmaster's PID while it runs. */
  pid: () => number | undefined
  /** Immediate shutdown (SIGQUIT to the postmaster): no checkpoint, crash recovery at the next start. */
  crash: () => Promise<void>
  /** SIGKILL to the postmaster, as `kill -9` does: its sessions die as they notice. */
  kill: () => Promise<void>
  start: () => Promise<void>
  stop: () => Promise<void>
}

export interface PrivateStandby extends PrivatePostgres {
  /** Ends recovery: the standby becomes a primary on a new timeline (resolves once it accepts writes). */
  promote: () => Promise<void>
  remove: () => Promise<void>
}

function binaries (): string | undefined {
  const root = '/usr/lib/postgresql'
  if (!existsSync(root)) return undefined
  const versions = readdirSync(root).filter((v) => existsSync(path.join(root, v, 'bin', 'initdb'))).sort((a, b) => Number(b) - Number(a))
  return versions.length ? path.join(root, versions[0], 'bin') : undefined
}

/** Why a private server cannot be started here, or undefined when it can. */
export function privatePostgresUnavailable (): string | undefined {
  if (!binaries()) return 'no PostgreSQL server binaries under /usr/lib/postgresql'
  if (process.getuid?.() !== 0) return 'starting a server as the postgres user needs root (runuser)'
  if (spawnSync('id', ['-u', 'postgres']).status !== 0) return 'no postgres user'
  return undefined
}

async function waitReady (url: string, ms: number): Promise<void> {
  const deadline = Date.now() + ms
  for (;;) {
    const c = new pg.Client({ connectionString: url, connectionTimeoutMillis: 1000 })
    try {
      await c.connect()
      await c.query('select 1')
      return
    } catch (err) {
      if (Date.now() > deadline) throw err
      await new Promise((resolve) => setTimeout(resolve, 100))
    } finally {
      await c.end().catch(() => {})
    }
  }
}

/** Sends `name` to the postmaster `pid` and waits (at most 30 s) until it is gone. */
async function signalAndWait (pid: number, name: NodeJS.Signals): Promise<void> {
  try { process.kill(pid, name) } catch { return }
  const deadline = Date.now() + 30_000
  while (Date.now() < deadline) {
    try { process.kill(pid, 0) } catch { return }
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

export async function startPrivatePostgres (options: { settings?: Record<string, string> } = {}): Promise<PrivatePostgres & { remove: () => Promise<void> }> {
  const bin = binaries()!
  const dir = await mkdtemp(path.join(tmpdir(), 'fc-pg-'))
  const data = path.join(dir, 'data')
  await chown(dir, Number(spawnSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).stdout.trim()), Number(spawnSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).stdout.trim()))
  const init = spawnSync('runuser', ['-u', 'postgres', '--', path.join(bin, 'initdb'), '-D', data, '-A', 'trust', '-U', 'postgres', '--no-sync', '-E', 'UTF8', '--locale=C'], { encoding: 'utf8' })
  if (init.status !== 0) throw new Error(`initdb failed: ${init.stderr}`)
  const port = await freePort()
  const url = (database = 'postgres') => `postgres://postgres@127.0.0.1:${port}/${database}`
  let pid: number | undefined

  const server: PrivatePostgres & { remove: () => Promise<void> } = {
    url,
    port,
    pid: () => pid,
    async start () {
      // Durable as production is: fsync and synchronous_commit on (the defaults, stated).
      const child = spawn('runuser', ['-u', 'postgres', '--', path.join(bin, 'postgres'), '-D', data, '-p', String(port), '-k', dir,
        '-c', 'listen_addresses=127.0.0.1', '-c', 'fsync=on', '-c', 'synchronous_commit=on', '-c', 'max_connections=50',
        ...Object.entries(options.settings ?? {}).flatMap(([k, v]) => ['-c', `${k}=${v}`])], { stdio: 'ignore', detached: false })
      child.unref()
      await waitReady(url(), 30_000)
      pid = Number(readFileSync(path.join(data, 'postmaster.pid'), 'utf8').split('\n')[0])
    },
    async crash () { await signal('SIGQUIT') },
    async kill () { await signal('SIGKILL') },
    async stop () { await signal('SIGINT') }, // fast shutdown
    async remove () {
      if (pid !== undefined) await signal('SIGQUIT').catch(() => {})
      await rm(dir, { recursive: true, force: true })
    }
  }

  async function signal (name: NodeJS.Signals): Promise<void> {
    if (pid === undefined) return
    const target = pid
    pid = undefined
    await signalAndWait(target, name)
  }

  await server.start()
  return server
}

/**
 * A hot standby of `primary` streaming from it (pg_basebackup, as the
 * cluster's replica is made: scripts/streaming-replica.ts), on a free port,
 * for tests that promote it as a failover manager would.
 */
export async function startPrivateStandby (primary: PrivatePostgres): Promise<PrivateStandby> {
  const dir = await mkdtemp(path.join(tmpdir(), 'fc-standby-'))
  const user = serverUser()
  if (user) await chown(dir, user.uid, user.gid)
  const port = await freePort()
  const prepared = await prepareStreamingReplica({ primaryUrl: primary.url(), dir: path.join(dir, 'data'), port })
  if (typeof prepared === 'string') { await rm(dir, { recursive: true, force: true }); throw new Error(prepared) }
  // Once promoted it is a primary a standby of its own may copy (a rejoining node).
  await appendFile(path.join(prepared.dir, 'pg_hba.conf'), 'host replication all 127.0.0.1/32 trust\n')
  const url = (database = 'postgres') => `postgres://postgres@127.0.0.1:${port}/${database}`
  let pid: number | undefined
  async function signal (name: NodeJS.Signals): Promise<void> {
    if (pid === undefined) return
    const target = pid
    pid = undefined
    await signalAndWait(target, name)
  }
  const standby: PrivateStandby = {
    url,
    port,
    pid: () => pid,
    async start () {
      const child = spawn(prepared.command[0], prepared.command.slice(1), { ...prepared.spawnOptions, stdio: 'ignore' })
      child.unref()
      await waitReady(url(), 60_000)
      pid = postmasterPid(prepared.dir)
    },
    async promote () {
      const c = new pg.Client({ connectionString: url(), connectionTimeoutMillis: 5000 })
      await c.connect()
      try {
        await c.query('select pg_promote(true, 60)')
      } finally {
        await c.end().catch(() => {})
      }
    },
    crash: () => signal('SIGQUIT'),
    kill: () => signal('SIGKILL'),
    stop: () => signal('SIGINT'),
    async remove () {
      await signal('SIGQUIT').catch(() => {})
      await rm(dir, { recursive: true, force: true })
    }
  }
  await standby.start()
  return standby
}
