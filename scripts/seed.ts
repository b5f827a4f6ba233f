// `npm run seed`: fills DATABASE_URL (or the embedded database) with deterministic demo content.
// `--force` seeds again even when content exists (for an empty schema it is not needed).
import { Type } from '@sinclair/typebox'
import { loadConfig, DatabaseEnv } from '../common/config.js'
import { createDatabase } from '../common/db.js'
import { resolveDatabaseUrl } from '../common/database-url.js'
import { migrateToLatest } from '../migrations/migrator.js'
import { seed } from '../common/seed.js'

const config = loadConfig(Type.Object({ DATABASE_URL: DatabaseEnv.DATABASE_URL, FLASHCROWD_STATE_DIR: DatabaseEnv.FLASHCROWD_STATE_DIR }))
const target = await resolveDatabaseUrl(config.DATABASE_URL, console.log, config.FLASHCROWD_STATE_DIR)
const handle = createDatabase({ url: target.url, max: 2, statementTimeoutMs: 600_000 })
try {
  await migrateToLatest(handle.db)
  const started = Date.now()
  const result = await seed(handle.db, { force: process.argv.includes('--force') })
  console.log(result.seeded
    ? `seeded ${result.sizes.tutorials} tutorials, ${result.sizes.news} articles, ${result.sizes.comments} comments, ${result.sizes.events} events, ${result.sizes.completions} completions in ${Date.now() - started} ms`
    : 'content already present: nothing seeded (use --force to add more)')
} catch (err) {
  console.error((err as Error).message)
  process.exitCode = 1
} finally {
  await handle.close()
  await target.close()
}
