/**
 * The embedded default: PGlite (Postgres compiled to WASM) served over the
 * Postgres wire protocol by pglite-socket, so every role still talks `pg`
 * exactly as it would to a real server.
 *
 * PGlite is one process's database. The process that opens the data folder
 * owns it and writes `<dir>/embedded-db.json` (pid + url); any other process
 * of the tier started without DATABASE_URL connects to that owner instead of
 * opening the folder a second time.
 */
import { mkdir, readFile, writeFile, rm } from 'node:fs/promises'
import { createConnection } from 'node:net'
import path from 'node:path'
import { PGlite } from '@electric-sql/pglite'
import { PGLiteSocketServer } from '@electric-sql/pglite-socket'

export interface EmbeddedDatabase {
  url: string
  port: number
  /** The whole data folder as an uncompressed tarball (PGlite's dumpDataDir), for `loadDataDir`. */
  dump: () => Promise<Blob>
  close: () => Promise<void>
}

export interface EmbeddedOptions {
  /** Data folder, or `memory://` for a throwaway database. */
  dataDir: string
  host?: string
  port?: number
  /** Concurrent wire connections the multiplexer accepts (pglite-socket defaults to 1). */
  maxConnections?: number
  /** Start from this data folder (a `dump()`) instead of an empty cluster: skips PGlite's initdb. */
  loadDataDir?: Blob
}

export const DEFAULT_STATE_DIR = '.flashcrowd'

export async function startEmbeddedDatabase (options: EmbeddedOptions): Promise<EmbeddedDatabase> {
  const memory = options.dataDir.startsWith('memory://')
  if (!memory) await mkdir(options.dataDir, { recursive: true })
  const db = await PGlite.create(memory ? options.dataDir : path.resolve(options.dataDir), options.loadDataDir ? { loadDataDir: options.loadDataDir } : {})
  const server = new PGLiteSocketServer({
    db,
    host: options.host ?? '127.0.0.1',
    port: options.port ?? 0,
    maxConnections: options.maxConnections ?? 200
  })
  await server.start()
  const port = (server as unknown as { port: number }).port
  const url = `postgres://postgres@${options.host ?? '127.0.0.1'}:${port}/postgres`
  let closed = false
  return {
    url,
    port,
    dump: async () => await db.dumpDataDir('none'),
    async close () {
      if (closed) return
      closed = true
      await server.stop()
      await db.close()
    }
  }
}

interface OwnerRecord { pid: number, url: string, port: number }

function alive (pid: number): boolean {
  try { process.kill(pid, 0); return true } catch (err) { return (err as NodeJS.ErrnoException).code === 'EPERM' }
}

function reachable (port: number, host = '127.0.0.1'): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ port, host })
    socket.setTimeout(500)
    socket.once('connect', () => { socket.destroy(); resolve(true) })
    socket.once('error', () => resolve(false))
    socket.once('timeout', () => { socket.destroy(); resolve(false) })
  })
}

/** The URL of a running embedded database owned by another live process, if any. */
export async function findEmbeddedOwner (stateDir = DEFAULT_STATE_DIR): Promise<string | undefined> {
  try {
    const record = JSON.parse(await readFile(path.join(stateDir, 'embedded-db.json'), 'utf8')) as OwnerRecord
    if (record.pid !== process.pid && alive(record.pid) && await reachable(record.port)) return record.url
  } catch { /* no owner */ }
  return undefined
}

/**
 * Opens the embedded database in this process and records ownership, so that
 * other processes started without DATABASE_URL find it.
 */
export async function ownEmbeddedDatabase (stateDir = DEFAULT_STATE_DIR, port = 0): Promise<EmbeddedDatabase> {
  const embedded = await startEmbeddedDatabase({ dataDir: path.join(stateDir, 'pgdata'), port })
  const file = path.join(stateDir, 'embedded-db.json')
  await writeFile(file, JSON.stringify({ pid: process.pid, url: embedded.url, port: embedded.port } satisfies OwnerRecord))
  return {
    ...embedded,
    async close () {
      await embedded.close()
      await rm(file, { force: true })
    }
  }
}
