/**
 * A real streaming replica of a local PostgreSQL primary, for `npm run
 * cluster` and for the tests that measure read-your-writes against replica
 * lag: `pg_basebackup -R` into a folder, a minimal configuration of its own
 * (Debian keeps the primary's in /etc, so the copy has none), and the server
 * binary started directly — as the `postgres` user when we are root (the
 * server refuses to run as root), through the spawn's uid/gid rather than a
 * wrapper such as runuser, so the PID the caller holds is the server's own.
 *
 * A replica replays the whole primary cluster: databases created after the
 * base backup appear on it too, once it has replayed their creation.
 */
import { spawnSync, type SpawnOptions } from 'node:child_process'
import { existsSync, readdirSync, readFileSync, readlinkSync, realpathSync } from 'node:fs'
import { chmod, chown, mkdir, rm, writeFile } from 'node:fs/promises'
import path from 'node:path'
import pg from 'pg'
import { processStartedAt, stopProcess, waitGone } from './pid-record.js'

/**
 * Settings a hot standby must hold at least as high as its primary, or it
 * refuses to start ("recovery aborted because of insufficient parameter
 * settings"): the standby copies the primary's values instead of writing
 * PostgreSQL's defaults.
 */
export const STANDBY_MINIMUMS = ['max_connections', 'max_worker_processes', 'max_wal_senders', 'max_prepared_transactions', 'max_locks_per_transaction'] as const

/** The primary's values of STANDBY_MINIMUMS, as `name = value` lines of postgresql.conf. */
export async function standbyMinimums (primaryUrl: string): Promise<string[]> {
  const client = new pg.Client({ connectionString: primaryUrl, connectionTimeoutMillis: 10_000 })
  await client.connect()
  try {
    const { rows } = await client.query<{ name: string, setting: string }>('select name, setting from pg_settings where name = any($1::text[]) order by name', [[...STANDBY_MINIMUMS]])
    return rows.map((r) => `${r.name} = ${Number(r.setting)}`)
  } finally {
    await client.end().catch(() => {})
  }
}

/** Folder of the newest PostgreSQL server binaries (Debian layout), if installed. */
export function pgBinDir (): string | undefined {
  const base = '/usr/lib/postgresql'
  if (!existsSync(base)) return undefined
  const versions = readdirSync(base).sort((a, b) => Number(b) - Number(a))
  for (const v of versions) if (existsSync(path.join(base, v, 'bin', 'pg_basebackup'))) return path.join(base, v, 'bin')
  return undefined
}

/** uid/gid to run the server as: the postgres user when we are root, ourselves otherwise. */
export function serverUser (): { uid: number, gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined
  const line = readFileSync('/etc/passwd', 'utf8').split('\n').find((l) => l.startsWith('postgres:'))
  if (!line) return undefined
  const [, , uid, gid] = line.split(':')
  return { uid: Number(uid), gid: Number(gid) }
}

export interface ReplicaOptions {
  /** The primary (any database on it): host, port and user are used. */
  primaryUrl: string
  /** Data folder of the replica (created; must not hold anything else). */
  dir: string
  port: number
  /** recovery_min_apply_delay: how far behind the primary the replica applies commits. */
  applyDelayMs?: number
}

export interface PreparedReplica {
  /** The server command line (run it with `spawnOptions`). */
  command: string[]
  spawnOptions: SpawnOptions
  /** The replica's URL for the primary URL's database. */
  url: string
  dir: string
}

/**
 * Takes the base backup and writes the replica's configuration; answers why
 * not (a sentence) when PostgreSQL does not allow it here.
 */
export async function prepareStreamingReplica (options: ReplicaOptions): Promise<PreparedReplica | string> {
  const bin = pgBinDir()
  if (!bin) return 'the PostgreSQL server binaries are not installed'
  const primary = new URL(options.primaryUrl)
  const user = serverUser()
  if (process.getuid?.() === 0 && !user) return 'we are root and there is no postgres user to run the replica as'
  const dir = path.resolve(options.dir)
  const asServer: SpawnOptions = user ? { uid: user.uid, gid: user.gid } : {}
  if (!existsSync(path.join(dir, 'standby.signal'))) {
    await rm(dir, { recursive: true, force: true })
    await mkdir(dir, { recursive: true })
    if (user) await chown(dir, user.uid, user.gid)
    await chmod(dir, 0o700)
    const res = spawnSync(path.join(bin, 'pg_basebackup'), [
      '-h', primary.hostname, '-p', primary.port || '5432', '-U', decodeURIComponent(primary.username) || 'postgres',
      '-D', dir, '-R', '-X', 'stream', '--checkpoint=fast', '--no-password'
    ], { ...asServer, encoding: 'utf8', timeout: 120_000, env: { PATH: process.env.PATH ?? '', PGCONNECT_TIMEOUT: '10' } })
    if (res.status !== 0) {
      await rm(dir, { recursive: true, force: true })
      const reason = (res.stderr || res.stdout || res.error?.message || '').trim().split('\n').pop() || 'pg_basebackup failed'
      return `pg_basebackup was refused (${reason}); allow it with "host replication all 127.0.0.1/32 trust" in pg_hba.conf`
    }
  }
  // The copy's own configuration (the primary's may live outside its data folder),
  // with the primary's values of the settings a standby may not hold lower.
  const minimums = await standbyMinimums(options.primaryUrl)
  const files: Record<string, string> = {
    'postgresql.conf': [
      '# written by flashcrowd: a local streaming replica',
      "listen_addresses = '127.0.0.1'",
      `port = ${options.port}`,
      `unix_socket_directories = '${dir}'`,
      'hot_standby = on',
      // Replay keeps going while long reads run here; the primary knows what they need.
      'hot_standby_feedback = on',
      `recovery_min_apply_delay = '${Math.max(0, Math.round(options.applyDelayMs ?? 0))}ms'`,
      'shared_buffers = 32MB',
      // A throwaway copy: losing it on a crash costs nothing.
      'fsync = off',
      'logging_collector = off',
      "log_min_messages = 'warning'",
      ...minimums,
      ''
    ].join('\n'),
    'pg_hba.conf': 'local all all trust\nhost all all 127.0.0.1/32 trust\n',
    'pg_ident.conf': ''
  }
  for (const [name, text] of Object.entries(files)) {
    const file = path.join(dir, name)
    await writeFile(file, text, { mode: 0o600 })
    if (user) await chown(file, user.uid, user.gid)
  }
  const url = Object.assign(new URL(options.primaryUrl), { hostname: '127.0.0.1', port: String(options.port) }).toString()
  return {
    command: [path.join(bin, 'postgres'), '-D', dir],
    spawnOptions: { ...asServer, env: { PATH: process.env.PATH ?? '' } },
    url,
    dir
  }
}

/** Changes recovery_min_apply_delay of a prepared replica; the running server picks it up on SIGHUP. */
export async function writeApplyDelay (dir: string, applyDelayMs: number): Promise<void> {
  const file = path.join(dir, 'postgresql.conf')
  const text = readFileSync(file, 'utf8').replace(/^recovery_min_apply_delay = .*$/m, `recovery_min_apply_delay = '${Math.max(0, Math.round(applyDelayMs))}ms'`)
  await writeFile(file, text)
}

/** The PID the server wrote into its data folder (the postmaster's), if it is running. */
export function postmasterPid (dir: string): number | undefined {
  try {
    const pid = Number(readFileSync(path.join(dir, 'postmaster.pid'), 'utf8').split('\n')[0])
    return Number.isInteger(pid) && pid > 0 ? pid : undefined
  } catch {
    return undefined
  }
}

/**
 * The processes working in a data folder: a postgres server and every one of
 * its children run with the data folder as their working directory. Empty
 * where /proc cannot tell (not Linux).
 */
export function processesIn (dir: string): number[] {
  let target: string
  try { target = realpathSync(dir) } catch { return [] }
  let entries: string[]
  try { entries = readdirSync('/proc') } catch { return [] }
  const found: number[] = []
  for (const entry of entries) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue
    try {
      if (readlinkSync(`/proc/${entry}/cwd`) === target) found.push(Number(entry))
    } catch { /* gone, or not ours to look at */ }
  }
  return found
}

/**
 * Clears the way for a server on `dir` before each start, so a supervisor
 * never restart-loops on "lock file postmaster.pid already exists":
 *
 * - a postgres still running on this folder (left by a cluster or supervisor
 *   that was killed, which orphans it) is stopped: fast shutdown (SIGINT),
 *   SIGQUIT after 10 s, SIGKILL after 5 more;
 * - children of a killed postmaster that still hold the folder (and its
 *   shared memory, which a new server refuses to share) are waited for, and
 *   killed after 10 s;
 * - a postmaster.pid whose PID runs no process in this folder (the server
 *   died, and the number may have been taken by another process) is removed.
 *
 * Answers what it did, for the log, or undefined when the way was clear.
 */
export async function clearPostmaster (dir: string): Promise<string | undefined> {
  const done: string[] = []
  const pid = postmasterPid(dir)
  const inDir = processesIn(dir)
  if (pid !== undefined && inDir.includes(pid)) {
    done.push(`stopped the postgres left running on ${dir} (PID ${pid})`)
    const started = processStartedAt(pid)
    try { process.kill(pid, 'SIGINT') } catch { /* already gone */ }
    if (!await waitGone(pid, started, 10_000)) await stopProcess(pid, 'SIGQUIT', 5_000)
  }
  const orphans = processesIn(dir)
  if (orphans.length > 0) {
    done.push(`waited for ${orphans.length} process(es) of a stopped postgres to leave ${dir}`)
    await Promise.all(orphans.map(async (child) => {
      if (!await waitGone(child, processStartedAt(child), 10_000)) await stopProcess(child, 'SIGKILL', 5_000)
    }))
  }
  const left = postmasterPid(dir)
  if (left !== undefined) {
    await rm(path.join(dir, 'postmaster.pid'), { force: true })
    if (done.length === 0) done.push(`removed a stale postmaster.pid (PID ${left} is no postgres on ${dir})`)
  }
  return done.length > 0 ? done.join('; ') : undefined
}
