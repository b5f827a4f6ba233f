/**
 * What the benchmarks share: the reference tools from Debian's packages and
 * one wrk runner. wrk is the HTTP client of every benchmark that compares
 * against a C reference (Varnish, nginx, pgbench): a JavaScript client on
 * the same 2 cores would spend the CPU the server under test needs.
 */
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'

/** `npm run build`: what is measured is the compiled code production runs, not tsx's on-the-fly transpile. */
export function buildDist (): void {
  const r = spawnSync(process.execPath, [fileURLToPath(new URL('../scripts/build.mjs', import.meta.url))], { stdio: 'inherit' })
  if (r.status !== 0) throw new Error('npm run build failed')
}

export function have (cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0
}

/** Installs the Debian packages whose commands are missing; `tools` maps a command to its package. */
export function ensureTools (tools: Record<string, string>): void {
  const missing = Object.entries(tools).filter(([cmd]) => !have(cmd)).map(([, pkg]) => pkg)
  if (missing.length === 0) return
  console.log(`installing ${missing.join(', ')} (apt-get)…`)
  spawnSync('apt-get', ['-o', 'DPkg::Lock::Timeout=300', 'update', '-qq'], { stdio: 'inherit' })
  const r = spawnSync('apt-get', ['-o', 'DPkg::Lock::Timeout=300', 'install', '-y', '-qq', ...missing], { stdio: 'inherit', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } })
  if (r.status !== 0) throw new Error(`could not install ${missing.join(', ')}`)
}

export interface WrkOptions {
  threads: number
  connections: number
  seconds: number
  /** a Lua script (wrk -s) and the arguments after `--` it receives in init() */
  script?: string
  scriptArgs?: string[]
}

export interface WrkRun {
  /** answers received */
  requests: number
  rps: number
  p99ms: number
  /** answers outside 2xx/3xx */
  non2xx: number
  /** connect, read, write and timeout errors together */
  socketErrors: number
}

/** wrk's latency figures: `812.00us`, `1.23ms`, `2.01s`. */
export function parseLatency (s: string): number {
  const m = /^([\d.]+)(us|ms|s)$/.exec(s)
  if (!m) return NaN
  const v = Number(m[1])
  return m[2] === 'us' ? v / 1000 : m[2] === 's' ? v * 1000 : v
}

export function wrk (url: string, o: WrkOptions): WrkRun {
  const args = ['-t', String(o.threads), '-c', String(o.connections), '-d', `${o.seconds}s`, '--latency']
  if (o.script !== undefined) args.push('-s', o.script)
  args.push(url)
  if (o.scriptArgs !== undefined) args.push('--', ...o.scriptArgs)
  const r = spawnSync('wrk', args, { encoding: 'utf8' })
  const rps = /Requests\/sec:\s+([\d.]+)/.exec(r.stdout)?.[1]
  if (r.status !== 0 || rps === undefined) throw new Error(`wrk failed: ${r.stdout}${r.stderr}`)
  const socket = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(r.stdout)
  return {
    requests: Number(/(\d+) requests in/.exec(r.stdout)?.[1] ?? 0),
    rps: Number(rps),
    p99ms: parseLatency(/\s99%\s+(\S+)/.exec(r.stdout)?.[1] ?? ''),
    non2xx: Number(/Non-2xx or 3xx responses: (\d+)/.exec(r.stdout)?.[1] ?? 0),
    socketErrors: socket ? socket.slice(1).reduce((sum, n) => sum + Number(n), 0) : 0
  }
}
