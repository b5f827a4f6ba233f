/**
 * Fresh databases for tests, on both targets the tier supports: the embedded
 * PGlite (always) and the real Postgres at DATABASE_URL (when set; CI sets it).
 * Each call gets its own database, migrated, so test files can run in parallel.
 */
import { randomBytes } from 'node:crypto'
import pg from 'pg'
import type { Test } from 'tap'
import { startEmbeddedDatabase } from '../../common/embedded-db.js'
import { createDatabase, type DatabaseHandle } from '../../common/db.js'
import { migrateToLatest } from '../../migrations/migrator.js'
import { seed, type SeedSizes } from '../../common/seed.js'

export type DatabaseKind = 'embedded' | 'postgres'

export interface TestDatabase {
  kind: DatabaseKind
  url: string
  /** Only for the real server: the admin URL, to create roles or stop connections. */
  adminUrl?: string
  close: () => Promise<void>
}

export const SMALL_SEED: SeedSizes = { tutorials: 12, news: 24, comments: 80, events: 40, completions: 10 }

export function databaseKinds (): DatabaseKind[] {
  return process.env.DATABASE_URL ? ['embedded', 'postgres'] : ['embedded']
}

export async function createTestDatabase (kind: DatabaseKind, options: { seed?: Partial<SeedSizes> | false } = {}): Promise<TestDatabase> {
  let target: TestDatabase
  if (kind === 'embedded') {
    const embedded = await startEmbeddedDatabase({ dataDir: 'memory://' })
    target = { kind, url: embedded.url, close: embedded.close }
  } else {
    const adminUrl = process.env.DATABASE_URL
    if (!adminUrl) throw new Error('DATABASE_URL is not set')
    const name = `fc_test_${process.pid}_${randomBytes(4).toString('hex')}`
    const admin = new pg.Client({ connectionString: adminUrl })
    await admin.connect()
    await admin.query(`create database ${name}`)
    await admin.end()
    const url = new URL(adminUrl)
    url.pathname = `/${name}`
    target = {
      kind,
      url: url.toString(),
      adminUrl,
      async close () {
        const c = new pg.Client({ connectionString: adminUrl })
        await c.connect()
        await c.query(`drop database if exists ${name} with (force)`)
        await c.end()
      }
    }
  }
  // One connection: setup is sequential anyway, and no connect is left pending
  // while a long statement runs. The embedded server runs on this process's
  // event loop, so while it executes a statement no timer here can fire on
  // time; under CPU contention a 2 s connect deadline measured its own work
  // and failed the setup. The deadline still exists, for a server that is gone.
  const handle = createDatabase({ url: target.url, max: 1, statementTimeoutMs: 60_000, connectTimeoutMs: kind === 'embedded' ? 30_000 : 5_000 })
  try {
    await migrateToLatest(handle.db)
    if (options.seed !== false) await seed(handle.db, { sizes: { ...SMALL_SEED, ...(options.seed ?? {}) } })
  } catch (err) {
    // Never leave a server behind: an open embedded database keeps the test process alive until tap's timeout.
    await handle.close().catch(() => {})
    await target.close().catch(() => {})
    throw err
  } finally {
    await handle.close()
  }
  return target
}

/**
 * Runs `fn` as one subtest per database kind, each on a fresh database that is
 * dropped afterwards.
 */
export function eachDatabase (t: Test, name: string, fn: (t: Test, database: TestDatabase) => Promise<void>, options: { seed?: Partial<SeedSizes> | false } = {}): void {
  for (const kind of databaseKinds()) {
    t.test(`${name} [${kind}]`, async (t) => {
      const database = await createTestDatabase(kind, options)
      t.teardown(database.close)
      await fn(t, database)
    })
  }
}

/** A kysely handle on a test database, closed at teardown. */
export function openDatabase (t: Test, database: TestDatabase, options: { readOnly?: boolean } = {}): DatabaseHandle {
  const handle = createDatabase({ url: database.url, max: 5, readOnly: options.readOnly })
  t.teardown(handle.close)
  return handle
}
