/** Runs a role's server.ts as its own process, as `npm run <role>` does. */
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import net from 'node:net'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')

export interface Spawned { child: ChildProcess, output: () => string, exited: Promise<number | null> }

export function spawnScript (script: string, env: Record<string, string | undefined>, args: string[] = []): Spawned {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(ROOT, script), ...args], {
    cwd: ROOT,
    env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let out = ''
  child.stdout!.on('data', (d) => { out += d })
  child.stderr!.on('data', (d) => { out += d })
  const exited = once(child, 'exit').then(([code]) => code as number | null)
  return { child, output: () => out, exited }
}

/** Waits for a line of output matching `pattern`; its first group, or undefined if the process exits or time runs out. */
export async function waitForLine (run: Spawned, pattern: RegExp, ms: number): Promise<string | undefined> {
  const deadline = Date.now() + ms
  while (Date.now() < deadline && run.child.exitCode === null) {
    const m = pattern.exec(run.output())
    if (m) return m[1] ?? m[0]
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  return pattern.exec(run.output())?.[1]
}

/** True when nothing accepts connections on the port any more (it was released). */
export function portRefused (port: number, host = '127.0.0.1'): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, host)
    socket.once('error', () => resolve(true))
    socket.once('connect', () => { socket.destroy(); resolve(false) })
  })
}
