/**
 * A real streaming replica of the PostgreSQL server at DATABASE_URL, with a
 * chosen apply delay (recovery_min_apply_delay), for the tests that measure
 * read-your-writes against replica lag. Built by the same code as the
 * cluster's (scripts/streaming-replica.ts), on a free port in a temporary
 * folder, stopped by the server's own PID and removed at teardown.
 *
 * The replica replays the whole server: every test database created on the
 * primary — before or after the base backup — appears on it once replayed
 * (`caughtUp`), so one replica serves any number of test databases.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { chown, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import pg from 'pg'
import type { Test } from 'tap'
import { freePort } from '../../common/free-port.js'
import { parseLsn } from '../../frontend/read-your-writes.js'
import { postmasterPid, prepareStreamingReplica, serverUser, writeApplyDelay } from '../../scripts/streaming-replica.js'

export interface StreamingReplica {
  port: number
  /** The postgres server's own PID (not a wrapper's). */
  pid: number
  /** The replica's URL for a database of the primary (its URL on the primary). */
  urlFor (primaryDatabaseUrl: string): string
  /** Changes the apply delay of the running replica (reload) and waits until it is in effect. */
  setApplyDelay (ms: number): Promise<void>
  /** Waits until the replica has replayed everything the primary had written when called (bounded). */
  caughtUp (timeoutMs?: number): Promise<void>
  stop (): Promise<void>
  /** What the server printed (for failure messages). */
  output (): string
}

/** Why a replica cannot be had here, or undefined when it can be tried. */
export function replicaSkipReason (): string | false {
  if (!process.env.DATABASE_URL) return 'needs DATABASE_URL (a real PostgreSQL server to replicate)'
  return false
}

async function query<T extends pg.QueryResultRow> (url: string, text: string): Promise<T[]> {
  const c = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5000 })
  await c.connect()
  try { return (await c.query<T>(text)).rows } finally { await c.end().catch(() => {}) }
}

async function poll (check: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    if (await check().catch(() => false)) return
    if (Date.now() >= deadline) throw new Error(`${what}: not within ${timeoutMs} ms`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

/**
 * Starts a replica of DATABASE_URL's server; a string (the reason) when
 * PostgreSQL does not allow replication here, so the caller can skip.
 */
export async function startStreamingReplica (t: Test, options: { applyDelayMs: number }): Promise<StreamingReplica | string> {
  const primaryUrl = process.env.DATABASE_URL
  if (!primaryUrl) return 'DATABASE_URL is not set'
  const base = await mkdtemp(path.join(tmpdir(), 'fc-replica-'))
  const user = serverUser()
  // The server runs as postgres: it must reach its folder inside ours.
  if (user) await chown(base, user.uid, user.gid)
  t.teardown(() => rm(base, { recursive: true, force: true }))
  const port = await freePort()
  const prepared = await prepareStreamingReplica({ primaryUrl, dir: path.join(base, 'data'), port, applyDelayMs: options.applyDelayMs })
  if (typeof prepared === 'string') return prepared

  let out = ''
  const child: ChildProcess = spawn(prepared.command[0], prepared.command.slice(1), { ...prepared.spawnOptions, stdio: ['ignore', 'pipe', 'pipe'] })
  child.stdout!.on('data', (d) => { out = (out + d).slice(-20_000) })
  child.stderr!.on('data', (d) => { out = (out + d).slice(-20_000) })
  const exited = new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve()
    else child.once('exit', () => resolve())
  })
  let stopped = false
  const stop = async () => {
    if (stopped) return
    stopped = true
    if (child.exitCode === null && child.signalCode === null) {
      // Fast shutdown (SIGINT): ends the sessions and stops; SIGQUIT if it dawdles.
      child.kill('SIGINT')
      const timer = setTimeout(() => child.kill('SIGQUIT'), 10_000)
      await exited
      clearTimeout(timer)
    }
  }
  t.teardown(stop)

  const adminUrl = Object.assign(new URL(prepared.url), { pathname: '/postgres' }).toString()
  try {
    await poll(async () => (await query<{ r: boolean }>(adminUrl, 'select pg_is_in_recovery() as r'))[0]?.r === true, 60_000, 'the replica did not come up')
  } catch (err) {
    await stop()
    throw new Error(`${(err as Error).message}\n${out}`)
  }
  const pid = postmasterPid(prepared.dir)
  if (pid === undefined || pid !== child.pid) {
    await stop()
    throw new Error(`the replica's postmaster.pid (${pid}) is not the process we started (${child.pid})`)
  }

  const primaryLsn = async () => parseLsn((await query<{ l: string }>(primaryUrl, 'select pg_current_wal_lsn()::text as l'))[0].l)!
  const replayLsn = async () => parseLsn((await query<{ l: string | null }>(adminUrl, 'select pg_last_wal_replay_lsn()::text as l'))[0].l) ?? 0n

  return {
    port,
    pid,
    urlFor: (primaryDatabaseUrl) => Object.assign(new URL(primaryDatabaseUrl), { hostname: '127.0.0.1', port: String(port) }).toString(),
    async setApplyDelay (ms) {
      await writeApplyDelay(prepared.dir, ms)
      process.kill(pid, 'SIGHUP')
      await poll(async () => (await query<{ d: string }>(adminUrl, "select setting as d from pg_settings where name = 'recovery_min_apply_delay'"))[0]?.d === String(Math.round(ms)), 10_000, 'the new apply delay did not take effect')
    },
    async caughtUp (timeoutMs = 30_000) {
      const target = await primaryLsn()
      await poll(async () => await replayLsn() >= target, timeoutMs, 'the replica did not catch up')
    },
    stop,
    output: () => out
  }
}
