/**
 * The local cluster's record of its processes: `pids.json` in its state
 * folder, name → PID (`cluster` is the supervisor itself), rewritten in order
 * and atomically on every start and restart. Stopping goes by this record, not
 * by cluster.json: `npm run cluster -- stop`, and a new cluster clearing what
 * a killed one left running, stop every process recorded, however many nodes
 * the cluster had.
 *
 * A PID outlives its process: after a crash or a reboot the number may belong
 * to something else. A recorded PID is only signalled while its process
 * started before the record was last written (every spawn rewrites it), which
 * a process that took over the number cannot have.
 */
import { readFileSync } from 'node:fs'
import { readFile, rename, rm, stat, writeFile } from 'node:fs/promises'

export type PidRecord = Record<string, number>

/** The roles in the order they stop: the front door first, the database (replica, or routers, Patroni and etcd) last. */
const ROLE_ORDER = ['front', 'cache', 'frontend', 'backend', 'mailer', 'purger', 'replica', 'database-router', 'patroni', 'etcd']

/**
 * Names grouped in stop order (`cache3` is a cache, `backend12` a backend),
 * numbered nodes in number order, unknown names last. Members of a group stop
 * together; each group fully before the next.
 */
export function stopGroups (names: string[]): string[][] {
  const parse = (name: string) => {
    const m = /^(.*?)(\d*)$/.exec(name)!
    const rank = ROLE_ORDER.indexOf(m[1])
    return { name, rank: rank < 0 ? ROLE_ORDER.length : rank, n: m[2] === '' ? 0 : Number(m[2]) }
  }
  const groups: string[][] = []
  for (const p of names.map(parse).sort((a, b) => a.rank - b.rank || a.n - b.n || a.name.localeCompare(b.name))) {
    (groups[p.rank] ??= []).push(p.name)
  }
  return groups.filter((g) => g !== undefined)
}

/** Writes the record, one write at a time and atomically (a reader never sees half a file or an older one last). */
export class PidRecorder {
  readonly file: string
  #chain: Promise<void> = Promise.resolve()
  constructor (file: string) { this.file = file }

  write (pids: Record<string, number | undefined>): Promise<void> {
    const text = JSON.stringify(Object.fromEntries(Object.entries(pids).filter(([, pid]) => pid !== undefined)), null, 2)
    this.#chain = this.#chain.then(async () => {
      const tmp = `${this.file}.${process.pid}.tmp`
      await writeFile(tmp, text)
      await rename(tmp, this.file)
    }).catch(() => {})
    return this.#chain
  }

  async remove (): Promise<void> {
    await this.#chain
    await rm(this.file, { force: true })
  }
}

export async function readPidRecord (file: string): Promise<{ pids: PidRecord, writtenAt: number } | undefined> {
  try {
    const [text, info] = await Promise.all([readFile(file, 'utf8'), stat(file)])
    const parsed = JSON.parse(text) as Record<string, unknown>
    const pids = Object.fromEntries(Object.entries(parsed).filter((e): e is [string, number] => Number.isInteger(e[1]) && (e[1] as number) > 0))
    return { pids, writtenAt: info.mtimeMs }
  } catch {
    return undefined
  }
}

// Linux reports a process's start in clock ticks since boot; USER_HZ is 100 on every architecture Node runs on.
const TICKS_PER_SECOND = 100

/**
 * When the process started (ms since the epoch), or undefined when it is not
 * running (a zombie counts as gone). Without /proc (not Linux) a live process
 * counts as started at 0, so the record is trusted as it stands.
 */
export function processStartedAt (pid: number): number | undefined {
  let statText: string
  try {
    statText = readFileSync(`/proc/${pid}/stat`, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' && !procAvailable()) {
      try { process.kill(pid, 0); return 0 } catch (e) { return (e as NodeJS.ErrnoException).code === 'EPERM' ? 0 : undefined }
    }
    return undefined
  }
  // The command name (field 2) may hold spaces and parentheses: fields are counted after its last ')'.
  const fields = statText.slice(statText.lastIndexOf(')') + 2).split(' ')
  if (fields[0] === 'Z' || fields[0] === 'X') return undefined
  const uptimeSeconds = Number(readFileSync('/proc/uptime', 'utf8').split(' ')[0])
  return Date.now() - (uptimeSeconds - Number(fields[19]) / TICKS_PER_SECOND) * 1000
}

function procAvailable (): boolean {
  try { readFileSync('/proc/uptime'); return true } catch { return false }
}

/** Slack for the start-time comparison (tick and clock rounding). */
const SLACK_MS = 500

/** True while `pid` runs and is the process that was recorded at `writtenAt`. */
export function isRecordedProcess (pid: number, writtenAt: number): boolean {
  const started = processStartedAt(pid)
  return started !== undefined && started <= writtenAt + SLACK_MS
}

export interface StopOptions {
  /** The signal that asks each one to stop (default SIGTERM; the replica's postgres: SIGINT, its fast shutdown). */
  signalOf?: (name: string) => NodeJS.Signals
  /** SIGKILL after this long. */
  graceMs?: number
  log?: (message: string) => void
}

/** Waits until `pid` is gone (or no longer the process started at `startedAt`); false on timeout. */
export async function waitGone (pid: number, startedAt: number | undefined, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const now = processStartedAt(pid)
    if (now === undefined || (startedAt !== undefined && Math.abs(now - startedAt) > SLACK_MS)) return true
    if (Date.now() >= deadline) return false
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

/** Stops one process: its stop signal, then SIGKILL after the grace period. */
export async function stopProcess (pid: number, signal: NodeJS.Signals, graceMs: number): Promise<void> {
  const startedAt = processStartedAt(pid)
  if (startedAt === undefined) return
  try { process.kill(pid, signal) } catch { return }
  if (await waitGone(pid, startedAt, graceMs)) return
  try { process.kill(pid, 'SIGKILL') } catch { return }
  await waitGone(pid, startedAt, 10_000)
}

/**
 * Stops every process of `pids` that is still the one recorded at
 * `writtenAt`, in stop order (stopGroups); answers the names it stopped.
 */
export async function stopRecorded (pids: PidRecord, writtenAt: number, options: StopOptions = {}): Promise<string[]> {
  const stopped: string[] = []
  for (const group of stopGroups(Object.keys(pids))) {
    await Promise.all(group.map(async (name) => {
      const pid = pids[name]
      if (!isRecordedProcess(pid, writtenAt)) return
      options.log?.(`stopping ${name} (PID ${pid})`)
      await stopProcess(pid, options.signalOf?.(name) ?? 'SIGTERM', options.graceMs ?? 15_000)
      stopped.push(name)
    }))
  }
  return stopped
}
