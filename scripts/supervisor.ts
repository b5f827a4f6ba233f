/**
 * A small process supervisor for the one-machine tier and the local cluster:
 * starts each role as its own Node process (IPC channel attached, so the
 * embedded bus reaches it), prefixes its log lines with its name, restarts it
 * with back-off when it crashes, and stops everything in a given order.
 */
import { fork, spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { setPriority } from 'node:os'
import { createInterface } from 'node:readline'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { relayBus, type Bus } from '../common/bus.js'
import type { ShutdownLog } from '../common/shutdown.js'

const HERE = path.dirname(fileURLToPath(import.meta.url))
/**
 * Built (`npm run build`: this file is dist/scripts/supervisor.js) the roles
 * run as plain `node dist/<role>/server.js`; from the sources through tsx.
 */
export const COMPILED = import.meta.url.endsWith('.js')
/** Folder of the code: the repository, or dist/ when built. */
const CODE_ROOT = path.resolve(HERE, '..')
/** The repository (working directory of every role, base of relative paths such as the state folder). */
export const ROOT = COMPILED ? path.resolve(CODE_ROOT, '..') : CODE_ROOT

/** How a script of this repository (named by its source, e.g. backend/server.ts) is run: file and Node flags. */
export function scriptCommand (script: string): { file: string, execArgv: string[] } {
  return COMPILED
    ? { file: path.join(CODE_ROOT, script.replace(/\.ts$/, '.js')), execArgv: [] }
    : { file: path.join(CODE_ROOT, script), execArgv: ['--import', 'tsx'] }
}

export interface ServiceSpec {
  name: string
  /** A Node script of this repository, named by its source (run through tsx, or its build in dist/; with an IPC channel)… */
  script?: string
  /** …or an external program and its arguments (HAProxy, postgres). */
  command?: string[]
  /** Another user for an external program (postgres refuses to run as root); its PID stays the program's own. */
  user?: { uid: number, gid: number }
  env: Record<string, string | undefined>
  /** URL that answers 200 when the service is ready. */
  healthUrl?: string
  /** The signal that asks it to stop gracefully (postgres: SIGINT, its fast shutdown; SIGTERM would wait for every client session). */
  stopSignal?: NodeJS.Signals
  /**
   * A scheduling priority (nice value) for an external program and what it forks, when we may
   * set it (a negative one needs root; otherwise it keeps ours).
   */
  priority?: number
  /** Runs before every start and restart, e.g. to clear the lock file a killed server left behind. */
  beforeStart?: () => Promise<void>
}

/** A role's exit code for a configuration it refuses (common/config.ts): restarting it cannot help. */
const CONFIG_ERROR_EXIT = 2

interface Service {
  spec: ServiceSpec
  child?: ChildProcess
  restarts: number
  backoffMs: number
  stopping: boolean
  timer?: NodeJS.Timeout
  startedAt: number
  /** Why it is not restarted any more. */
  failure?: string
  lastExit?: string
}

export type LogWriter = (name: string, line: string, stream: 'out' | 'err') => void

/** How long a stopping service may take before it is killed (per stop group). */
export const STOP_GRACE_MS = 15_000

/** The supervisor's own close messages, through its log writer. */
export function shutdownLog (log: LogWriter, name: string): ShutdownLog {
  const text = (obj: Record<string, unknown>, msg: string) => {
    const err = obj.err instanceof Error ? `: ${obj.err.stack ?? obj.err.message}` : ''
    return `${typeof obj.signal === 'string' ? `${obj.signal}: ` : ''}${msg}${err}`
  }
  return {
    info: (obj, msg) => log(name, text(obj, msg), 'out'),
    error: (obj, msg) => log(name, text(obj, msg), 'err')
  }
}

/** Role-prefixed lines; pino JSON made readable on a terminal. */
export async function createLogWriter (pretty: boolean): Promise<LogWriter> {
  const width = 10
  if (!pretty) {
    return (name, line, stream) => {
      // JSON stays JSON (one object per line) with the role added, for log shippers:
      // the supervisor's name for it (cache2), over a role's own (cache).
      if (line.startsWith('{')) {
        try {
          const obj = JSON.parse(line) as Record<string, unknown>
          process.stdout.write(`${JSON.stringify(Object.assign({ role: name }, obj, { role: name }))}\n`)
          return
        } catch { /* not JSON after all */ }
      }
      (stream === 'err' ? process.stderr : process.stdout).write(`${JSON.stringify({ role: name, msg: line })}\n`)
    }
  }
  const { prettyFactory } = await import('pino-pretty')
  const format = prettyFactory({ colorize: true, translateTime: 'HH:MM:ss.l', ignore: 'pid,hostname,reqId' })
  const colors = [36, 35, 33, 32, 34, 31]
  const colorOf = new Map<string, number>()
  return (name, line, stream) => {
    if (!colorOf.has(name.split('#')[0])) colorOf.set(name.split('#')[0], colors[colorOf.size % colors.length])
    const prefix = `\x1b[${colorOf.get(name.split('#')[0])}m${name.padEnd(width)}\x1b[0m│ `
    let text = line
    if (line.startsWith('{')) {
      try { text = format(JSON.parse(line)).trimEnd() } catch { /* keep the raw line */ }
    }
    (stream === 'err' ? process.stderr : process.stdout).write(text.split('\n').map((l) => prefix + l).join('\n') + '\n')
  }
}

export class Supervisor {
  readonly #services = new Map<string, Service>()
  readonly #log: LogWriter
  readonly #relay: ReturnType<typeof relayBus> | undefined
  #stopping = false
  /** Called after every (re)start, e.g. to record PIDs. */
  onSpawn?: (name: string, child: ChildProcess) => void

  constructor (options: { log: LogWriter, bus?: Bus }) {
    this.#log = options.log
    this.#relay = options.bus ? relayBus(options.bus) : undefined
  }

  /**
   * Starts a service; resolves when its health URL answers 200 (or at once
   * without one). Rejects, naming why, when it exits with a configuration
   * error, keeps crashing (more than three times) or is not healthy in time.
   */
  async start (spec: ServiceSpec, readyTimeoutMs = 60_000): Promise<void> {
    const service: Service = { spec, restarts: 0, backoffMs: 500, stopping: false, startedAt: 0 }
    this.#services.set(spec.name, service)
    await this.#launch(service)
    if (spec.healthUrl) {
      const ok = await waitHealthy(spec.healthUrl, readyTimeoutMs, () => service.failure !== undefined || (service.child?.exitCode !== null && service.restarts > 3))
      if (!ok) {
        const why = service.failure ?? (service.restarts > 3 ? `it exited ${service.restarts} times (last: ${service.lastExit})` : `no answer within ${readyTimeoutMs / 1000} s`)
        throw new Error(`${spec.name} did not become healthy at ${spec.healthUrl}: ${why}`)
      }
    }
  }

  /** Runs the pre-start hook, then spawns; a failing hook counts as a crash (restarted with back-off). */
  async #launch (service: Service): Promise<void> {
    try {
      await service.spec.beforeStart?.()
    } catch (err) {
      this.#log(service.spec.name, `could not prepare the start: ${(err as Error).message}`, 'err')
      service.lastExit = (err as Error).message
      this.#restartLater(service)
      return
    }
    if (service.stopping || this.#stopping) return
    this.#spawn(service)
  }

  #restartLater (service: Service): void {
    // Exponential back-off, reset after a minute of good health.
    if (Date.now() - service.startedAt > 60_000) service.backoffMs = 500
    service.restarts++
    this.#log('supervisor', `${service.spec.name} exited (${service.lastExit}); restarting in ${service.backoffMs} ms (restart #${service.restarts})`, 'err')
    service.timer = setTimeout(() => { if (!this.#stopping && !service.stopping) void this.#launch(service) }, service.backoffMs)
    service.backoffMs = Math.min(service.backoffMs * 2, 30_000)
  }

  #spawn (service: Service): void {
    const { spec } = service
    const env = { ...process.env, ...spec.env }
    const child = spec.script
      ? fork(scriptCommand(spec.script).file, [], { cwd: ROOT, env, execArgv: scriptCommand(spec.script).execArgv, stdio: ['ignore', 'pipe', 'pipe', 'ipc'] })
      : spawn(spec.command![0], spec.command!.slice(1), { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'], ...spec.user })
    service.child = child
    service.startedAt = Date.now()
    if (spec.priority !== undefined && child.pid !== undefined) {
      try { setPriority(child.pid, spec.priority) } catch { /* not allowed: it runs at ours */ }
    }
    if (spec.script) this.#relay?.attach(child)
    child.on('error', (err) => this.#log(spec.name, `could not start: ${err.message}`, 'err'))
    this.onSpawn?.(spec.name, child)
    for (const [stream, name] of [[child.stdout!, 'out'], [child.stderr!, 'err']] as const) {
      createInterface({ input: stream }).on('line', (line) => this.#log(spec.name, line, name))
    }
    child.once('exit', (code, signal) => {
      if (service.stopping || this.#stopping) return
      service.lastExit = signal ?? `code ${code}`
      if (code === CONFIG_ERROR_EXIT && spec.script) {
        service.failure = 'it refused its configuration (exit code 2; its message is above)'
        this.#log('supervisor', `${spec.name} refused its configuration; not restarting it`, 'err')
        return
      }
      this.#restartLater(service)
    })
  }

  pid (name: string): number | undefined { return this.#services.get(name)?.child?.pid }
  pids (): Record<string, number | undefined> { return Object.fromEntries([...this.#services].map(([n, s]) => [n, s.child?.pid])) }
  restarts (name: string): number { return this.#services.get(name)?.restarts ?? 0 }
  names (): string[] { return [...this.#services.keys()] }

  /**
   * Stops services group by group (each group fully before the next, the
   * members of a group together), every service not named last; SIGKILL after
   * `graceMs`.
   */
  async stop (order: Array<string | string[]>, graceMs = STOP_GRACE_MS): Promise<void> {
    this.#stopping = true
    const groups = order.map((g) => typeof g === 'string' ? [g] : g)
    const named = new Set(groups.flat())
    const rest = [...this.#services.keys()].filter((n) => !named.has(n))
    for (const group of [...groups, rest]) {
      await Promise.all(group.map((name) => this.#stopOne(name, graceMs)))
    }
    this.#relay?.close()
  }

  async #stopOne (name: string, graceMs: number): Promise<void> {
    const service = this.#services.get(name)
    if (!service) return
    service.stopping = true
    clearTimeout(service.timer)
    const child = service.child
    if (!child || child.exitCode !== null || child.signalCode !== null) return
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
    child.kill(service.spec.stopSignal ?? 'SIGTERM')
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs)
    await exited
    clearTimeout(timer)
  }
}

export async function waitHealthy (url: string, timeoutMs: number, givenUp: () => boolean = () => false): Promise<boolean> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline && !givenUp()) {
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(2000) })
      if (res.status === 200) return true
    } catch { /* not up yet */ }
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  return false
}

/**
 * A credential the tier needs (ADMIN_TOKEN, METRICS_TOKEN): the configured
 * value when set, else one generated once and kept in the state folder
 * (readable by its owner only), so scripts keep working across restarts.
 */
async function stateToken (file: 'admin-token' | 'metrics-token', configured: string | undefined, stateDir: string): Promise<string> {
  if (configured) return configured
  const where = path.join(stateDir, file)
  try { return (await readFile(where, 'utf8')).trim() } catch { /* first run */ }
  const token = randomBytes(24).toString('base64url')
  await mkdir(stateDir, { recursive: true })
  await writeFile(where, `${token}\n`, { mode: 0o600 })
  return token
}

/** The token for the editor API and PURGE/BAN (ADMIN_TOKEN, or `<state>/admin-token`). */
export const adminToken = (configured: string | undefined, stateDir: string) => stateToken('admin-token', configured, stateDir)

/** The scraper's token for GET /-/metrics (METRICS_TOKEN, or `<state>/metrics-token`). */
export const metricsToken = (configured: string | undefined, stateDir: string) => stateToken('metrics-token', configured, stateDir)
