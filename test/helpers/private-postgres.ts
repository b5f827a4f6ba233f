/**
 * A PostgreSQL server of the test's own (initdb in a temporary folder, a
 * free port, run as the `postgres` user through runuser), so a test may
 * crash and restart it without touching the shared server. Stopped by its
 * postmaster's PID; the folder is removed at teardown.
 */
import { spawn, spawnSync } from 'node:child_process'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { chown, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import pg from 'pg'
import { freePort } from '../../common/free-port.js'

export interface PrivatePostgres {
  url: (database?: string) => string
  /** The postmaster's PID while it runs. */
  pid: () => number | undefined
  /** Immediate shutdown (SIGQUIT to the postmaster): no checkpoint, crash recovery at the next start. */
  crash: () => Promise<void>
  start: () => Promise<void>
  stop: () => Promise<void>
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

/** `settings`: server settings given on the command line (`-c name=value`), over the defaults below. */
export async function startPrivatePostgres (settings: Record<string, string | number> = {}): Promise<PrivatePostgres & { remove: () => Promise<void> }> {
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
    pid: () => pid,
    async start () {
      // Durable as production is: fsync and synchronous_commit on (the defaults, stated).
      const all = { listen_addresses: '127.0.0.1', fsync: 'on', synchronous_commit: 'on', max_connections: 50, ...settings }
      const child = spawn('runuser', ['-u', 'postgres', '--', path.join(bin, 'postgres'), '-D', data, '-p', String(port), '-k', dir,
        ...Object.entries(all).flatMap(([name, value]) => ['-c', `${name}=${value}`])], { stdio: 'ignore', detached: false })
      child.unref()
      await waitReady(url(), 30_000)
      pid = Number(readFileSync(path.join(data, 'postmaster.pid'), 'utf8').split('\n')[0])
    },
    async crash () { await signal('SIGQUIT') },
    async stop () { await signal('SIGINT') }, // fast shutdown
    async remove () {
      if (pid !== undefined) await signal('SIGQUIT').catch(() => {})
      await rm(dir, { recursive: true, force: true })
    }
  }

  async function signal (name: NodeJS.Signals): Promise<void> {
    if (pid === undefined) return
    const target = pid
    try { process.kill(target, name) } catch { pid = undefined; return }
    const deadline = Date.now() + 30_000
    while (Date.now() < deadline) {
      try { process.kill(target, 0) } catch { break }
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
    pid = undefined
  }

  await server.start()
  return server
}
