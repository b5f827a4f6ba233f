/** Runs a role's server.ts as its own process, as `npm run <role>` does. */
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
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

/** Polls `url` until it answers `status` (or the deadline passes). */
export async function waitForStatus (url: string, status = 200, ms = 20_000): Promise<boolean> {
  const deadline = Date.now() + ms
  while (Date.now() < deadline) {
    try { if ((await fetch(url)).status === status) return true } catch { /* not up yet */ }
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  return false
}
