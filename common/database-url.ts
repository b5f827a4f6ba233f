/**
 * Where a role's database is: DATABASE_URL when set; otherwise the embedded
 * database of this machine's tier (joined if another process owns it, opened,
 * migrated and seeded here if nobody does).
 */
import { createDatabase, type DatabaseHandle } from './db.js'
import { findEmbeddedOwner, ownEmbeddedDatabase, DEFAULT_STATE_DIR } from './embedded-db.js'
import { migrateToLatest } from '../migrations/migrator.js'
import { seed } from './seed.js'

export interface ResolvedDatabase {
  url: string
  embedded: boolean
  /** Closes the embedded database if this process owns it. */
  close: () => Promise<void>
}

export async function resolveDatabaseUrl (url: string | undefined, log: (msg: string) => void = () => {}, stateDir = DEFAULT_STATE_DIR, options: { joinOnly?: boolean } = {}): Promise<ResolvedDatabase> {
  if (url) return { url, embedded: false, close: async () => {} }
  const existing = await findEmbeddedOwner(stateDir)
  if (existing) {
    log(`using the embedded database at ${existing}`)
    return { url: existing, embedded: true, close: async () => {} }
  }
  // A reader (the frontend) never opens, migrates or seeds a database: that is a write.
  if (options.joinOnly) throw new Error(`no database: set DATABASE_READ_URL or DATABASE_URL, or start the backend first (it opens the embedded database in ${stateDir})`)
  const embedded = await ownEmbeddedDatabase(stateDir)
  log(`started the embedded database (PGlite) at ${embedded.url}, data in ${stateDir}/pgdata`)
  await prepareDatabase(embedded.url, log)
  return { url: embedded.url, embedded: true, close: embedded.close }
}

/** The settings a role that joins the tier's database reads (common/config.ts DatabaseEnv). */
export interface JoinDatabaseConfig {
  DATABASE_URL?: string
  FLASHCROWD_STATE_DIR: string
  DATABASE_POOL_MAX: number
  DATABASE_STATEMENT_TIMEOUT_MS: number
  DATABASE_CONNECT_TIMEOUT_MS: number
}

/**
 * The pool of a role that never opens the embedded database itself (the
 * mailer, the purger): DATABASE_URL, or the embedded database the backend
 * owns. `close` ends the pool, then lets go of the database.
 */
export async function joinTierDatabase (config: JoinDatabaseConfig, role: string): Promise<{ database: DatabaseHandle, close: () => Promise<void> }> {
  const target = await resolveDatabaseUrl(config.DATABASE_URL, (msg) => console.error(`${role}: ${msg}`), config.FLASHCROWD_STATE_DIR, { joinOnly: true })
  const database = createDatabase({
    url: target.url,
    max: config.DATABASE_POOL_MAX,
    statementTimeoutMs: config.DATABASE_STATEMENT_TIMEOUT_MS,
    connectTimeoutMs: config.DATABASE_CONNECT_TIMEOUT_MS,
    applicationName: `flashcrowd-${role}`
  })
  return {
    database,
    async close () {
      await database.close()
      await target.close()
    }
  }
}

/** Migrates, then seeds an empty database. */
export async function prepareDatabase (url: string, log: (msg: string) => void = () => {}): Promise<void> {
  const handle = createDatabase({ url, max: 2, statementTimeoutMs: 120_000 })
  try {
    await migrateToLatest(handle.db)
    const started = Date.now()
    const result = await seed(handle.db)
    if (result.seeded) log(`seeded ${result.sizes.tutorials} tutorials, ${result.sizes.news} articles, ${result.sizes.comments} comments in ${Date.now() - started} ms`)
  } finally {
    await handle.close()
  }
}
