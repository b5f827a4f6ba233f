/**
 * The database of `npm run cluster` when cluster.json has a `database`
 * section: two PostgreSQL servers under Patroni over a one-node etcd, with
 * HAProxy routing writes to the leader and reads to the replica — the layout
 * Patroni's documentation shows. Patroni decides promotions; the roles only
 * retry (design §3).
 *
 * - etcd (the DCS) on `etcd`, its peer listener on a free port remembered in
 *   the state folder (a one-node cluster never dials it, but etcd needs one);
 * - Patroni `pg1`, `pg2`: PostgreSQL on `postgres[i]`, the REST API on
 *   `patroni[i]`; `synchronous_mode` (an acknowledged commit is on both
 *   servers), `use_pg_rewind` (a failed leader rejoins as a standby),
 *   `primary_start_timeout: 0` (a crashed leader's postmaster is failed over,
 *   not restarted in place);
 * - HAProxy on `write` (the server whose Patroni answers `OPTIONS /primary`)
 *   and `read` (those answering `/replica`; the leader while there is none).
 *
 * Everything runs as the postgres user (the server refuses root), spawned
 * with its uid/gid so the PIDs held are the processes' own. Patroni detaches
 * the postmaster: it is stopped through Patroni (SIGTERM), and what a killed
 * Patroni left running on a data folder is cleared before the next start.
 */
import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { chmod, chown, mkdir, readFile, writeFile } from 'node:fs/promises'
import path from 'node:path'
import pg from 'pg'
import { freePort } from '../common/free-port.js'
import type { ServiceSpec } from './supervisor.js'
import { clearPostmaster, pgBinDir, serverUser } from './streaming-replica.js'

/** The `database` section of cluster.json. */
export interface DatabasePorts {
  postgres: number[]
  patroni: number[]
  etcd: number
  write: number
  read: number
}

/**
 * Patroni's timing (seconds): the leader key lives `ttl`; each node acts every
 * `loop_wait` (a dead postmaster is seen within a second); a DCS or
 * PostgreSQL operation is retried `retry_timeout` before the leader demotes
 * itself. Patroni requires loop_wait + 2 × retry_timeout ≤ ttl (1 + 6 ≤ 8).
 */
export const PATRONI_TIMING = { ttl: 8, loop_wait: 1, retry_timeout: 3 }
/** The nice value of the database's processes (etcd, Patroni, PostgreSQL, HAProxy) when run as root: ahead of the rest. */
export const DATABASE_PRIORITY = -5
/** The cluster's name in etcd (Patroni's `scope`) and the database the roles use. */
export const SCOPE = 'flashcrowd'
export const DATABASE = 'flashcrowd'

/** Why the section cannot be used as written, or undefined. */
export function databasePortsProblem (ports: unknown): string | undefined {
  const p = ports as Partial<DatabasePorts> | undefined
  if (typeof p !== 'object' || p === null) return 'the database section must be an object'
  const isPort = (n: unknown) => Number.isInteger(n) && (n as number) > 0 && (n as number) < 65536
  if (!Array.isArray(p.postgres) || p.postgres.length < 2 || !p.postgres.every(isPort)) return 'database.postgres must list two or more ports'
  if (!Array.isArray(p.patroni) || p.patroni.length !== p.postgres.length || !p.patroni.every(isPort)) return 'database.patroni must list one port per database.postgres port'
  for (const key of ['etcd', 'write', 'read'] as const) if (!isPort(p[key])) return `database.${key} must be a port`
  return undefined
}

/** Every port of the section, named for messages. */
export function databasePortNames (ports: DatabasePorts): Array<[string, number]> {
  return [
    ...ports.postgres.map((p, i): [string, number] => [`postgres${i + 1}`, p]),
    ...ports.patroni.map((p, i): [string, number] => [`patroni${i + 1}`, p]),
    ['etcd', ports.etcd], ['database write', ports.write], ['database read', ports.read]
  ]
}

/** Member names in Patroni and in the PID record: pg1, pg2 / patroni1, patroni2. */
export const memberName = (i: number) => `pg${i + 1}`

export interface DatabaseLayout {
  root: string
  etcdDir: string
  dataDirs: string[]
  patroniConfigs: string[]
  haproxyConfig: string
}

export function databaseLayout (stateDir: string, ports: DatabasePorts): DatabaseLayout {
  const root = path.join(stateDir, 'database')
  return {
    root,
    etcdDir: path.join(root, 'etcd'),
    dataDirs: ports.postgres.map((_, i) => path.join(root, memberName(i))),
    patroniConfigs: ports.postgres.map((_, i) => path.join(root, `patroni-${memberName(i)}.yml`)),
    haproxyConfig: path.join(root, 'haproxy.cfg')
  }
}

/** The roles' URLs: writes to the leader, reads to the replica. */
export function databaseUrls (ports: DatabasePorts): { write: string, read: string } {
  return {
    write: `postgres://postgres@127.0.0.1:${ports.write}/${DATABASE}`,
    read: `postgres://postgres@127.0.0.1:${ports.read}/${DATABASE}`
  }
}

/** Why Patroni cannot run here (a sentence), or undefined. */
export function databaseUnavailable (): string | undefined {
  for (const [bin, pkg] of [['patroni', 'patroni'], ['etcd', 'etcd-server'], ['haproxy', 'haproxy']]) {
    if (spawnSync(bin, ['--version'], { stdio: 'ignore' }).error) return `${bin} is not installed (apt-get install ${pkg})`
  }
  if (!pgBinDir()) return 'the PostgreSQL server binaries are not installed'
  if (process.getuid?.() === 0 && !serverUser()) return 'we are root and there is no postgres user to run PostgreSQL as'
  return undefined
}

/** A YAML scalar: JSON strings are valid YAML. */
const y = (v: string | number | boolean) => typeof v === 'string' ? JSON.stringify(v) : String(v)

function patroniConfig (ports: DatabasePorts, layout: DatabaseLayout, i: number, bin: string): string {
  const host = '127.0.0.1'
  return `# written by npm run cluster (scripts/database-cluster.ts)
scope: ${SCOPE}
namespace: /flashcrowd/
name: ${memberName(i)}
log:
  level: WARNING
restapi:
  listen: ${host}:${ports.patroni[i]}
  connect_address: ${host}:${ports.patroni[i]}
etcd3:
  hosts: ${host}:${ports.etcd}
bootstrap:
  # Written to etcd when the cluster is first made; the cluster's configuration from then on.
  dcs:
    ttl: ${PATRONI_TIMING.ttl}
    loop_wait: ${PATRONI_TIMING.loop_wait}
    retry_timeout: ${PATRONI_TIMING.retry_timeout}
    # A crashed leader's postmaster is failed over at once, not restarted in place.
    primary_start_timeout: 0
    # A commit is acknowledged once it is on the synchronous standby too: the one
    # promoted on a failover holds every acknowledged write.
    synchronous_mode: true
    postgresql:
      use_pg_rewind: true
      use_slots: true
      parameters:
        max_connections: 200
        # A standby retries its source every half second, not every five (the default).
        wal_retrieve_retry_interval: 500ms
        wal_log_hints: "on"
        hot_standby: "on"
  initdb:
    - encoding: UTF8
    - locale: C
postgresql:
  listen: ${host}:${ports.postgres[i]}
  connect_address: ${host}:${ports.postgres[i]}
  data_dir: ${y(layout.dataDirs[i])}
  bin_dir: ${y(bin)}
  pgpass: ${y(path.join(layout.root, `pgpass-${memberName(i)}`))}
  # A rewind that cannot be done, or timelines that diverged: the node copies the leader afresh.
  remove_data_directory_on_rewind_failure: true
  remove_data_directory_on_diverged_timelines: true
  authentication:
    superuser:
      username: postgres
    replication:
      username: postgres
    rewind:
      username: postgres
  # Trust on loopback, as the cluster's replica does: these servers listen nowhere else.
  pg_hba:
    - local all all trust
    - host all all 127.0.0.1/32 trust
    - host replication all 127.0.0.1/32 trust
  parameters:
    unix_socket_directories: ${y(layout.root)}
    logging_collector: "off"
    log_min_messages: warning
    log_checkpoints: "off"
`
}

/**
 * HAProxy in TCP mode before the servers, checking each Patroni's REST API
 * (OPTIONS: a GET /primary that answers 503 fills Patroni's log with
 * tracebacks). A server marked down has its sessions cut, so clients of the
 * old leader meet a closed connection instead of waiting on it.
 */
export function databaseHaproxyConfig (ports: DatabasePorts, host = '127.0.0.1'): string {
  const servers = ports.postgres.map((p, i) => `  server ${memberName(i)} ${host}:${p} check port ${ports.patroni[i]}`).join('\n')
  return `# generated by npm run cluster (scripts/database-cluster.ts)
global
  maxconn 2000
defaults
  mode tcp
  # A dead server is known at once on loopback: try the other one.
  timeout connect 250ms
  # Pooled connections sit idle between queries.
  timeout client 30m
  timeout server 30m
  timeout check 2s
  retries 2
  # A server that is down is checked every 100 ms (a new leader takes writes
  # within ~0.1 s of Patroni promoting it), and one that failed a check is
  # checked again after 100 ms (an old leader is marked down, its sessions cut,
  # ~0.1 s after its first failed check).
  default-server inter 500ms fastinter 100ms downinter 100ms fall 2 rise 1 on-marked-down shutdown-sessions
listen database-write
  bind ${host}:${ports.write}
  option httpchk OPTIONS /primary
  http-check expect status 200
${servers}
frontend database-read
  bind ${host}:${ports.read}
  # Reads go to the replicas; while there is none (a failover, a node being
  # rebuilt) to any server that runs, the leader or one being promoted.
  use_backend database-replicas if { nbsrv(database-replicas) gt 0 }
  default_backend database-readable
backend database-replicas
  balance roundrobin
  option httpchk OPTIONS /replica
  http-check expect status 200
${servers}
backend database-readable
  balance first
  option httpchk OPTIONS /read-only
  http-check expect status 200
${servers}
`
}

/** A member as Patroni's GET /cluster lists it. */
export interface Member { name: string, role: string, state: string, host: string, port: number, timeline?: number, lag?: number | string }

/** The members as the Patroni on `restPort` sees them (undefined when it does not answer). */
export async function clusterMembers (restPort: number, timeoutMs = 2000): Promise<Member[] | undefined> {
  try {
    const res = await fetch(`http://127.0.0.1:${restPort}/cluster`, { signal: AbortSignal.timeout(timeoutMs) })
    if (res.status !== 200) return undefined
    return ((await res.json()) as { members: Member[] }).members
  } catch {
    return undefined
  }
}

/** The members, from whichever Patroni answers first. */
export async function anyMembers (ports: DatabasePorts): Promise<Member[] | undefined> {
  for (const rest of ports.patroni) {
    const members = await clusterMembers(rest)
    if (members) return members
  }
  return undefined
}

/**
 * True when the cluster is whole: one leader and every other member a
 * synchronous standby (listed in synchronous_standby_names: an acknowledged
 * commit is on both servers).
 */
export function healthy (members: Member[] | undefined, count: number): boolean {
  if (!members || members.length !== count) return false
  const leaders = members.filter((m) => m.role === 'leader' && m.state === 'running')
  // Patroni 3.0 says `running` for a replica that streams; later versions say `streaming`.
  const standbys = members.filter((m) => m.role === 'sync_standby' && (m.state === 'streaming' || m.state === 'running'))
  return leaders.length === 1 && standbys.length === count - 1
}

/** Asks `probe` until it answers something other than undefined or false (a throw counts as no); rejects after `timeoutMs`, naming `what`. */
export async function until<T> (what: string, probe: () => Promise<T | undefined | false>, timeoutMs: number, intervalMs = 200): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = await probe().catch(() => undefined)
    if (value !== undefined && value !== false) return value
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs / 1000} s`)
    await new Promise((resolve) => setTimeout(resolve, intervalMs))
  }
}

/** Waits until `url` reaches a server that takes writes (not in recovery). */
export async function waitWritable (url: string, timeoutMs: number): Promise<void> {
  const admin = Object.assign(new URL(url), { pathname: '/postgres' }).toString()
  await until(`no writable leader at ${new URL(url).host}`, async () => {
    const c = new pg.Client({ connectionString: admin, connectionTimeoutMillis: 2000 })
    try {
      await c.connect()
      return (await c.query<{ r: boolean }>('select pg_is_in_recovery() as r')).rows[0].r === false
    } finally { await c.end().catch(() => {}) }
  }, timeoutMs)
}

async function ownedByServer (dir: string, user: { uid: number, gid: number } | undefined): Promise<void> {
  await mkdir(dir, { recursive: true })
  await chmod(dir, 0o700)
  if (user) await chown(dir, user.uid, user.gid)
}

/**
 * Writes the configurations and answers the services to start, in order:
 * etcd, each Patroni, HAProxy. `log` hears what a start had to clear.
 */
export async function prepareDatabaseCluster (stateDir: string, ports: DatabasePorts, log: (msg: string) => void): Promise<ServiceSpec[]> {
  const bin = pgBinDir()
  if (!bin) throw new Error('the PostgreSQL server binaries are not installed')
  const user = serverUser()
  const layout = databaseLayout(stateDir, ports)
  await ownedByServer(layout.root, user)
  await ownedByServer(layout.etcdDir, user)
  // The postgres user must reach its folders inside ours (the folders above are the caller's to open).
  await chmod(stateDir, 0o755)
  const peerFile = path.join(layout.root, 'etcd-peer-port')
  const peer = existsSync(peerFile) ? Number((await readFile(peerFile, 'utf8')).trim()) : await freePort()
  await writeFile(peerFile, `${peer}\n`)
  for (let i = 0; i < ports.postgres.length; i++) {
    await writeFile(layout.patroniConfigs[i], patroniConfig(ports, layout, i, bin), { mode: 0o600 })
    if (user) await chown(layout.patroniConfigs[i], user.uid, user.gid)
  }
  await writeFile(layout.haproxyConfig, databaseHaproxyConfig(ports))

  const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', LANG: 'C.UTF-8', HOME: layout.root }
  const peerUrl = `http://127.0.0.1:${peer}`
  // etcd, Patroni (and the PostgreSQL it forks) and HAProxy ahead of the roles
  // and whatever else shares the machine: a starved Patroni cycle or etcd
  // renewal is a failover late by its delay, or one nobody caused (retry_timeout).
  const priority = DATABASE_PRIORITY
  const specs: ServiceSpec[] = [{
    name: 'etcd',
    command: ['etcd', '--name', SCOPE, '--data-dir', layout.etcdDir,
      '--listen-client-urls', `http://127.0.0.1:${ports.etcd}`, '--advertise-client-urls', `http://127.0.0.1:${ports.etcd}`,
      '--listen-peer-urls', peerUrl, '--initial-advertise-peer-urls', peerUrl,
      '--initial-cluster', `${SCOPE}=${peerUrl}`, '--initial-cluster-state', 'new', '--log-level', 'warn', '--logger', 'zap'],
    env,
    user,
    priority,
    healthUrl: `http://127.0.0.1:${ports.etcd}/health`
  }]
  ports.postgres.forEach((_, i) => {
    let starts = 0
    specs.push({
      name: `patroni${i + 1}`,
      command: ['patroni', layout.patroniConfigs[i]],
      env,
      user,
      priority,
      beforeStart: async () => {
        // A postmaster a killed Patroni (or a killed cluster) left running on the folder.
        if (starts++ === 0) {
          const done = await clearPostmaster(layout.dataDirs[i])
          if (done) log(done)
          return
        }
        // A node that was lost rejoins once its leader key has expired or moved, as a
        // standby of whichever node leads then (pg_rewind), rather than racing the failover.
        await until(`${memberName(i)}'s leader key`, async () => {
          const members = await anyMembers(ports)
          return members !== undefined && !members.some((m) => m.name === memberName(i) && m.role === 'leader')
        }, (PATRONI_TIMING.ttl + PATRONI_TIMING.loop_wait * 2) * 1000, 500).catch(() => {})
      }
    })
  })
  specs.push({ name: 'database-router', command: ['haproxy', '-f', layout.haproxyConfig, '-db'], env: {}, priority })
  return specs
}

/** Stops what a killed cluster left running on the data folders (Patroni detaches the postmaster). */
export async function clearDatabaseCluster (stateDir: string, ports: DatabasePorts): Promise<string[]> {
  const done: string[] = []
  for (const dir of databaseLayout(stateDir, ports).dataDirs) {
    const what = await clearPostmaster(dir)
    if (what) done.push(what)
  }
  return done
}
