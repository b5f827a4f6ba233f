/**
 * `npm run cache`: reads the configuration, builds the app, listens, and
 * closes gracefully on SIGINT/SIGTERM. With more than one worker (default: one
 * per core) the primary process only supervises: it forks the workers, which
 * share the listening socket and one store (shared-store.ts, in a directory
 * the primary creates and removes), holds the node's fetch lock (node-lock.ts),
 * and relays the invalidation bus to every worker (common/bus.ts `relayBus`).
 *
 * Stopping: a single process closes through close-with-grace
 * (common/shutdown.ts) like every other role. A node with workers is
 * stopped by its primary: SIGINT or SIGTERM there sends each worker one
 * SIGTERM and waits for them to drain (bounded), and a repeated signal is
 * ignored rather than obeyed at once, as close-with-grace would: node's
 * cluster workers exit the moment their primary goes away, so a primary that
 * quit at a second Ctrl-C would cut every answer still in flight. A worker
 * ignores SIGINT (Ctrl-C at a terminal reaches the whole process group at
 * once; its primary stops it) and closes on SIGTERM or when its primary is
 * gone.
 */
import cluster from 'node:cluster'
import os from 'node:os'
import { mkdirSync, mkdtempSync, readdirSync, rmSync, statfsSync } from 'node:fs'
import { join } from 'node:path'
import { pino } from 'pino'
import { ConfigError, loadConfigOrExit } from '../common/config.js'
import { createBus, IpcBus, MemoryBus, RedisStreamBus, relayBus, type Bus, type BusEvent } from '../common/bus.js'
import { CacheEnv, checkCacheConfig, type CacheConfig } from './config.js'
import { buildApp, type CacheDeps } from './app.js'
import { ipcNodeLock, nodeLockServer } from './node-lock.js'
import type { Logger } from './engine.js'
import { gracefulShutdown } from '../common/shutdown.js'

/** How long a closing cache waits for answers in flight (app.close gives them 2 s) before it exits anyway. */
const CLOSE_TIMEOUT_MS = 10_000

/** pino at LOG_LEVEL, like the other roles (their Fastify loggers), tagged with the role. */
function createLogger (level: string): Logger {
  return pino({ level }).child({ role: 'cache' })
}

/**
 * The primary's bus with Redis: publishes go to the stream; what the stream
 * delivers goes to a local bus that the relay fans out to the workers. A gap
 * (events possibly missed) becomes a ban of everything, delivered only locally
 * — every worker drops what it stored before it (design §2.3).
 */
class RedisRootBus implements Bus {
  readonly name = 'redis-root'
  readonly #redis: RedisStreamBus
  readonly #local = new MemoryBus()
  readonly #unsubscribe: () => void
  constructor (url: string, prefix: string, logger: Logger) {
    this.#redis = new RedisStreamBus({ url, prefix })
    this.#unsubscribe = this.#redis.subscribe((m) => { this.#local.deliver(m) }, {
      onGap: (since) => {
        logger.warn({ since }, 'invalidation bus gap: banning everything stored before it')
        const event: BusEvent = { kind: 'ban', pattern: '' }
        this.#local.deliver({ id: `gap-${Date.now()}`, at: Date.now(), event })
      }
    })
  }

  publish (event: BusEvent): Promise<string> { return this.#redis.publish(event) }
  subscribe (handler: Parameters<Bus['subscribe']>[0]): () => void { return this.#local.subscribe(handler) }
  async close (): Promise<void> { this.#unsubscribe(); await this.#redis.close(); await this.#local.close() }
}

function workerCount (config: CacheConfig): number {
  return config.CACHE_WORKERS > 0 ? config.CACHE_WORKERS : os.availableParallelism()
}

async function runSingle (config: CacheConfig, logger: Logger, bus: Bus, shared?: CacheDeps['shared']): Promise<void> {
  const app = buildApp({ config, bus, logger, shared })
  const close = async (): Promise<void> => {
    await app.close()
    await bus.close()
  }
  if (cluster.isWorker) {
    let closing = false
    const stop = (signal: string): void => {
      if (closing) return
      closing = true
      logger.info({ signal }, 'closing')
      setTimeout(() => process.exit(1), CLOSE_TIMEOUT_MS).unref()
      close().then(() => process.exit(0), (err: Error) => {
        logger.error({ err }, 'close failed')
        process.exit(1)
      })
    }
    process.on('SIGINT', () => { /* the primary got it too, and stops this worker (see the top of this file) */ })
    process.on('SIGTERM', () => { stop('SIGTERM') })
    // The primary went away: do not linger as an orphan.
    process.on('disconnect', () => { stop('disconnect') })
  } else {
    gracefulShutdown({ delayMs: CLOSE_TIMEOUT_MS, log: logger }, close)
  }
  const address = await app.listen()
  logger.info({ address: `http://${address.address}:${address.port}`, upstreams: config.UPSTREAMS, bus: bus.name }, 'cache listening')
}

/**
 * Where the shared store goes by default: memory (/dev/shm) when it has room
 * for the store's map, else the temporary directory. A full tmpfs would kill
 * a worker writing into its map (SIGBUS), and containers often get a 64 MB
 * /dev/shm: there, mount a memory volume and set CACHE_STORE_DIR (deploy/).
 */
function storeParent (maxBytes: number): string {
  const need = 2 * maxBytes + 64 * 1024 * 1024
  try {
    const s = statfsSync('/dev/shm')
    if (s.bavail * s.bsize >= need) return '/dev/shm'
  } catch { /* no /dev/shm */ }
  return os.tmpdir()
}

async function runPrimary (config: CacheConfig, logger: Logger, workers: number): Promise<void> {
  const bus: Bus = config.REDIS_URL ? new RedisRootBus(config.REDIS_URL, config.REDIS_PREFIX, logger) : createBus({})
  const relay = relayBus(bus)
  const locks = nodeLockServer({ leaseMs: config.CACHE_UPSTREAM_TIMEOUT_MS * 3, hitForMissMs: config.CACHE_HIT_FOR_MISS_SECONDS * 1000 })
  // The store every worker opens: emptied now (a store left by a crashed node
  // may hold pages invalidated while it was down), removed at exit when it is ours.
  const own = config.CACHE_STORE_DIR === ''
  const dir = own ? mkdtempSync(join(storeParent(config.CACHE_MAX_BYTES), 'flashcrowd-cache-')) : config.CACHE_STORE_DIR
  if (!own) {
    // Emptied, not removed: the directory may be a mount point (a memory volume).
    mkdirSync(dir, { recursive: true })
    for (const entry of readdirSync(dir)) rmSync(join(dir, entry), { recursive: true, force: true })
  }
  let closing = false
  let listened = false
  const fork = () => {
    const worker = cluster.fork({ CACHE_WORKER_OF: String(process.pid), CACHE_STORE_DIR: dir })
    relay.attach(worker)
    locks.attach(worker)
    worker.once('listening', () => { listened = true })
    worker.on('exit', (code, signal) => {
      if (closing) return
      if (!listened) {
        // No worker ever started (port taken, bad store directory): restarting would only loop.
        logger.error({ pid: worker.process.pid, code, signal }, 'cache worker failed to start; stopping the node')
        stop('start-up failure', 1)
        return
      }
      logger.error({ pid: worker.process.pid, code, signal }, 'cache worker died; starting another')
      setTimeout(fork, 500).unref()
    })
  }
  // The workers' close, then the node's own (see the top of this file); a start-up failure exits 1.
  const stop = (reason: string, exitCode = 0): void => {
    if (closing) return
    closing = true
    logger.info({ reason }, 'closing workers')
    setTimeout(() => process.exit(1), CLOSE_TIMEOUT_MS + 2_000).unref()
    const alive = Object.values(cluster.workers ?? {}).filter((w) => w !== undefined)
    void Promise.all(alive.map((w) => new Promise<void>((resolve) => {
      if (w.isDead()) { resolve(); return }
      w.once('exit', () => resolve())
      w.process.kill('SIGTERM')
    }))).then(async () => {
      relay.close()
      locks.close()
      await bus.close()
      if (own) rmSync(dir, { recursive: true, force: true })
    }).then(() => process.exit(exitCode), (err: Error) => {
      logger.error({ err }, 'close failed')
      process.exit(1)
    })
  }
  process.on('SIGINT', () => { stop('SIGINT') })
  process.on('SIGTERM', () => { stop('SIGTERM') })
  // Started by a supervisor that went away: do not linger as an orphan.
  if (typeof process.send === 'function') process.on('disconnect', () => { stop('disconnect') })
  for (let i = 0; i < workers; i++) fork()
  logger.info({ workers, port: config.PORT, bus: bus.name }, 'cache primary started')
}

async function main (): Promise<void> {
  const config = loadConfigOrExit(CacheEnv, 'cache')
  try { checkCacheConfig(config) } catch (err) {
    if (!(err instanceof ConfigError)) throw err
    console.error(`cache: ${err.message}`)
    process.exit(2)
  }
  const logger = createLogger(config.LOG_LEVEL)
  if (cluster.isWorker) {
    await runSingle(config, logger, new IpcBus(process), { path: config.CACHE_STORE_DIR, lock: ipcNodeLock({ timeoutMs: config.CACHE_COALESCE_TIMEOUT_MS }), workers: workerCount(config) })
    return
  }
  const workers = workerCount(config)
  if (workers > 1) await runPrimary(config, logger, workers)
  else await runSingle(config, logger, createBus({ redisUrl: config.REDIS_URL, prefix: config.REDIS_PREFIX }))
}

main().catch((err: Error) => {
  process.stderr.write(`cache: ${err.stack ?? err.message}\n`)
  process.exit(1)
})
