// `npm run migrate`: migrates DATABASE_URL (or the embedded database) to the latest schema; exits 1 on error.
import { migrateToLatest } from '../migrations/migrator.js'
import { runDatabaseCommand } from './database-command.js'

await runDatabaseCommand('migrate', async ({ db }) => {
  const applied = (await migrateToLatest(db)).results ?? []
  console.log(applied.length ? applied.map((r) => `${r.status.toLowerCase()}: ${r.migrationName}`).join('\n') : 'already at the latest migration')
})
