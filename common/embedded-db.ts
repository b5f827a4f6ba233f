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

interface Queued { handlerId: number, message: Uint8Array, onData: (data: Uint8Array) => void, resolve: (bytes: number) => void, reject: (err: unknown) => void }

/** Frontend messages after which the sender's extended-protocol sequence is still open (Parse, Bind, Describe, Execute, Close, Flush). */
const OPENS_SEQUENCE = new Set(['P', 'B', 'D', 'E', 'C', 'H'].map((c) => c.charCodeAt(0)))

/**
 * The order in which the connections' messages reach the one PGlite session.
 * pglite-socket's own queue keeps a connection's messages together only
 * while a transaction is open; between a connection's Parse and its Sync it
 * lets other connections in, and a statement of theirs replaces the unnamed
 * statement and portal the first one was about to use ("portal \"\" does not
 * exist", a statement run with another's parameters). Reproduced on a loaded
 * machine: a sign-up rush's batches and two mailers against one embedded
 * database. Here a connection owns the session from the first message of an
 * extended-protocol sequence to its Sync, and for the whole of a transaction;
 * the others' messages wait, in arrival order.
 */
class ProtocolQueue {
  readonly #db: PGlite
  #queue: Queued[] = []
  #running = false
  /** The connection whose sequence or transaction is open, if any. */
  #owner: number | null = null

  constructor (db: PGlite) { this.#db = db }

  enqueue (handlerId: number, message: Uint8Array, onData: (data: Uint8Array) => void): Promise<number> {
    return new Promise((resolve, reject) => {
      this.#queue.push({ handlerId, message, onData, resolve, reject })
      void this.#run()
    })
  }

  async #run (): Promise<void> {
    if (this.#running) return
    this.#running = true
    try {
      for (;;) {
        const at = this.#owner === null ? 0 : this.#queue.findIndex((q) => q.handlerId === this.#owner)
        // The owner has not sent its next message yet: everyone else waits for it.
        if (at < 0 || this.#queue.length === 0) return
        const item = this.#queue.splice(at, 1)[0]
        let bytes = 0
        try {
          await this.#db.runExclusive(async () => await this.#db.execProtocolRawStream(item.message, {
            onRawData: (data: Uint8Array) => { bytes += data.length; item.onData(data) }
          }))
        } catch (err) {
          item.reject(err)
          continue
        } finally {
          this.#owner = this.#db.isInTransaction() || OPENS_SEQUENCE.has(item.message[0]) ? item.handlerId : null
        }
        item.resolve(bytes)
      }
    } finally {
      this.#running = false
    }
  }

  getQueueLength (): number { return this.#queue.length }

  clearQueueForHandler (handlerId: number): void {
    this.#queue = this.#queue.filter((q) => {
      if (q.handlerId !== handlerId) return true
      q.reject(new Error('Handler disconnected'))
      return false
    })
  }

  /** A connection gone mid-sequence or mid-transaction gives the session back (rolled back). */
  async clearTransactionIfNeeded (handlerId: number): Promise<void> {
    if (this.#owner !== handlerId) return
    // exec takes the session's query lock itself.
    if (this.#db.isInTransaction()) await this.#db.exec('ROLLBACK')
    this.#owner = null
    await this.#run()
  }
}

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
  // Each connection's handler takes the server's queue when it is created, so replacing it here covers them all.
  ;(server as unknown as { queryQueue: ProtocolQueue }).queryQueue = new ProtocolQueue(db)
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
