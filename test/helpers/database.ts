/**
 * Fresh databases for tests, on both targets the tier supports: the embedded
 * PGlite (always) and the real Postgres at DATABASE_URL (when set; CI sets it).
 * Each call gets its own database, migrated, so test files can run in parallel.
 */
import { createHash, randomBytes } from 'node:crypto'
import { readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
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

/**
 * An embedded database costs seconds of CPU to create (PGlite runs initdb in
 * WASM), ten times what migrating and seeding it costs, and the suite creates
 * one per test. So the first test process to need one (per schema, seed and
 * hour) keeps the migrated, seeded data folder as a tarball in the temporary
 * directory, and every later one starts from a copy of it. The key covers
 * everything the content depends on: the migrations' source, the seed's
 * source and sizes, PGlite's version, and the hour (the seed dates events
 * from now).
 */
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')
function templateFile (seedSizes: Partial<SeedSizes> | false): string {
  const h = createHash('sha256')
  const migrations = path.join(ROOT, 'migrations')
  for (const f of readdirSync(migrations).sort()) h.update(f).update(readFileSync(path.join(migrations, f)))
  h.update(readFileSync(path.join(ROOT, 'common/seed.ts')))
  h.update(JSON.parse(readFileSync(path.join(ROOT, 'node_modules/@electric-sql/pglite/package.json'), 'utf8')).version)
  h.update(JSON.stringify(seedSizes)).update(new Date().toISOString().slice(0, 13))
  return path.join(tmpdir(), `flashcrowd-test-pglite-${h.digest('hex').slice(0, 16)}.tar`)
}

async function readTemplate (file: string): Promise<Blob | undefined> {
  try { return new Blob([await readFile(file)]) } catch { return undefined }
}

export async function createTestDatabase (kind: DatabaseKind, options: { seed?: Partial<SeedSizes> | false } = {}): Promise<TestDatabase> {
  let target: TestDatabase
  let saveTemplate: (() => Promise<void>) | undefined
  const seedSizes = options.seed === false ? false : { ...SMALL_SEED, ...(options.seed ?? {}) }
  if (kind === 'embedded') {
    const file = templateFile(seedSizes)
    const template = await readTemplate(file)
    if (template) {
      try {
        const copy = await startEmbeddedDatabase({ dataDir: 'memory://', loadDataDir: template })
        return { kind, url: copy.url, close: copy.close }
      } catch {
        // An unreadable template (a full disk when it was written): made again below.
        rmSync(file, { force: true })
      }
    }
    const embedded = await startEmbeddedDatabase({ dataDir: 'memory://' })
    target = { kind, url: embedded.url, close: embedded.close }
    saveTemplate = async () => {
      // Written whole, then renamed: a process reading it never sees half a file.
      const partial = `${file}.${process.pid}.${randomBytes(4).toString('hex')}`
      writeFileSync(partial, Buffer.from(await (await embedded.dump()).arrayBuffer()))
      renameSync(partial, file)
    }
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
    if (seedSizes !== false) await seed(handle.db, { sizes: seedSizes })
  } catch (err) {
    // Never leave a server behind: an open embedded database keeps the test process alive until tap's timeout.
    await handle.close().catch(() => {})
    await target.close().catch(() => {})
    throw err
  } finally {
    await handle.close()
  }
  await saveTemplate?.()
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
