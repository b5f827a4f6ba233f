// The loadtest CLI as a child process, the way `npm run loadtest` runs it:
// a coordinator and its agents are separate processes in these tests.
import { spawn, type ChildProcess } from 'node:child_process'
import { join } from 'node:path'
import { PassThrough } from 'node:stream'
import { main } from '../../loadtest/cli.js'

const ROOT = join(import.meta.dirname, '../..')

export interface CliProcess {
  child: ChildProcess
  readonly stdout: string
  readonly stderr: string
  /** exit code (null when killed by a signal) */
  exited: Promise<number | null>
  /** resolves with the first match of `re` in stderr, within `ms` */
  waitFor: (re: RegExp, ms?: number) => Promise<RegExpMatchArray>
}

/** Killed (by its PID) at the latest after `killAfterMs`: a test never leaves a process behind. */
export function startCli (args: string[], killAfterMs = 100_000): CliProcess {
  const child = spawn(process.execPath, ['--import', 'tsx', 'loadtest/cli.ts', ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  const watchers = new Set<() => void>()
  child.stdout!.on('data', (d: Buffer) => { stdout += d })
  child.stderr!.on('data', (d: Buffer) => { stderr += d; for (const w of watchers) w() })
  const timer = setTimeout(() => child.kill('SIGKILL'), killAfterMs)
  const exited = new Promise<number | null>(resolve => child.on('close', (code) => { clearTimeout(timer); for (const w of watchers) w(); resolve(code) }))
  return {
    child,
    get stdout () { return stdout },
    get stderr () { return stderr },
    exited,
    waitFor: (re, ms = 60_000) => new Promise((resolve, reject) => {
      const check = (): void => {
        const m = re.exec(stderr)
        if (m) { done(); resolve(m); return }
        if (child.exitCode !== null || child.signalCode !== null) { done(); reject(new Error(`process exited before ${re}: ${stderr.slice(-2000)}`)) }
      }
      const t = setTimeout(() => { done(); reject(new Error(`no ${re} within ${ms} ms: ${stderr.slice(-2000)}`)) }, ms)
      const done = (): void => { clearTimeout(t); watchers.delete(check) }
      watchers.add(check)
      check()
    })
  }
}

export function stop (p: CliProcess): void {
  if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL')
}

/** The same command line in this process (no TypeScript start to wait for): its exit code and what it wrote. */
export async function runCliHere (args: string[]): Promise<{ code: number, stdout: string, stderr: string }> {
  const out = new PassThrough()
  const err = new PassThrough()
  let stdout = ''
  let stderr = ''
  out.on('data', (d: Buffer) => { stdout += d })
  err.on('data', (d: Buffer) => { stderr += d })
  const code = await main(args, { stdout: out, stderr: err })
  return { code, stdout, stderr }
}
