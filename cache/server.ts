/**
 * `npm run cache`: reads the configuration, builds the app, listens, and
 * closes gracefully on SIGINT/SIGTERM. With more than one worker (default: one
 * per core) the primary process only supervises: it forks the workers, which
 * share the listening socket and one store (shared-store.ts, in a directory
 * the primary creates and removes), holds the node's fetch lock (node-lock.ts),
 * and relays the invalidation bus to every worker (common/bus.ts `relayBus`).
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
  const address = await app.listen()
  logger.info({ address: `http://${address.address}:${address.port}`, upstreams: config.UPSTREAMS, bus: bus.name }, 'cache listening')
  let closing = false
  const stop = async (signal: string) => {
    if (closing) return
    closing = true
    logger.info({ signal }, 'closing')
    const force = setTimeout(() => process.exit(1), 10_000)
    force.unref()
    await app.close()
    await bus.close()
    process.exit(0)
  }
  process.on('SIGINT', () => { void stop('SIGINT') })
  process.on('SIGTERM', () => { void stop('SIGTERM') })
  // A worker whose primary went away, or a node whose supervisor did: do not linger as an orphan.
  if (typeof process.send === 'function') process.on('disconnect', () => { void stop('disconnect') })
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
        void stop('start-up failure', 1)
        return
      }
      logger.error({ pid: worker.process.pid, code, signal }, 'cache worker died; starting another')
      setTimeout(fork, 500).unref()
    })
  }
  for (let i = 0; i < workers; i++) fork()
  logger.info({ workers, port: config.PORT, bus: bus.name }, 'cache primary started')
  const stop = async (signal: string, exitCode = 0) => {
    if (closing) return
    closing = true
    logger.info({ signal }, 'closing workers')
    const force = setTimeout(() => process.exit(1), 12_000)
    force.unref()
    const alive = Object.values(cluster.workers ?? {}).filter((w) => w !== undefined)
    await Promise.all(alive.map((w) => new Promise<void>((resolve) => {
      w.once('exit', () => resolve())
      w.process.kill('SIGTERM')
    })))
    relay.close()
    locks.close()
    await bus.close()
    if (own) rmSync(dir, { recursive: true, force: true })
    process.exit(exitCode)
  }
  process.on('SIGINT', () => { void stop('SIGINT') })
  process.on('SIGTERM', () => { void stop('SIGTERM') })
  if (typeof process.send === 'function') process.on('disconnect', () => { void stop('disconnect') })
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
