// `npm run migrate`: migrates DATABASE_URL (or the embedded database) to the latest schema.
import { Type } from '@sinclair/typebox'
import { loadConfig, DatabaseEnv } from '../common/config.js'
import { createDatabase } from '../common/db.js'
import { resolveDatabaseUrl } from '../common/database-url.js'
import { migrateToLatest } from '../migrations/migrator.js'

const config = loadConfig(Type.Object({ DATABASE_URL: DatabaseEnv.DATABASE_URL, FLASHCROWD_STATE_DIR: DatabaseEnv.FLASHCROWD_STATE_DIR }))
const target = await resolveDatabaseUrl(config.DATABASE_URL, console.log, config.FLASHCROWD_STATE_DIR)
const handle = createDatabase({ url: target.url, max: 1, statementTimeoutMs: 600_000 })
try {
  const result = await migrateToLatest(handle.db)
  const applied = result.results ?? []
  console.log(applied.length ? applied.map((r) => `${r.status.toLowerCase()}: ${r.migrationName}`).join('\n') : 'already at the latest migration')
} catch (err) {
  console.error((err as Error).message)
  process.exitCode = 1
} finally {
  await handle.close()
  await target.close()
}
