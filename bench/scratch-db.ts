/**
 * A scratch database for a benchmark: created on the PostgreSQL of
 * DATABASE_URL (default: the local one), migrated and seeded small, dropped
 * afterwards (with force: a process still connected does not keep it).
 */
import pg from 'pg'
import { createDatabase } from '../common/db.js'
import { migrateToLatest } from '../migrations/migrator.js'
import { seed, type SeedSizes } from '../common/seed.js'

export interface ScratchDatabase {
  url: string
  /** runs one statement on the scratch database, on a connection of its own */
  query: <R extends pg.QueryResultRow = any>(text: string, values?: unknown[]) => Promise<pg.QueryResult<R>>
  drop: () => Promise<void>
}

async function once<R extends pg.QueryResultRow> (url: string, text: string, values?: unknown[]): Promise<pg.QueryResult<R>> {
  const c = new pg.Client({ connectionString: url })
  await c.connect()
  try { return await c.query<R>(text, values) } finally { await c.end() }
}

export async function scratchDatabase (label: string, sizes: Partial<SeedSizes>): Promise<ScratchDatabase> {
  const adminUrl = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test'
  const name = `fc_bench_${label}_${process.pid}`
  await once(adminUrl, `create database ${name}`)
  const url = Object.assign(new URL(adminUrl), { pathname: `/${name}` }).toString()
  const drop = async (): Promise<void> => { await once(adminUrl, `drop database if exists ${name} with (force)`) }
  try {
    const handle = createDatabase({ url, max: 2, statementTimeoutMs: 600_000 })
    try {
      await migrateToLatest(handle.db)
      await seed(handle.db, { sizes })
    } finally {
      await handle.close()
    }
  } catch (err) {
    await drop()
    throw err
  }
  return { url, query: (text, values) => once(url, text, values), drop }
}
