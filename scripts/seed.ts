// `npm run seed`: fills DATABASE_URL (or the embedded database) with deterministic demo content,
// once: a database that already has content is left alone.
import { migrateToLatest } from '../migrations/migrator.js'
import { seed } from '../common/seed.js'
import { runDatabaseCommand } from './database-command.js'

await runDatabaseCommand('seed', async ({ db }) => {
  await migrateToLatest(db)
  const started = Date.now()
  const result = await seed(db)
  console.log(result.seeded
    ? `seeded ${result.sizes.tutorials} tutorials, ${result.sizes.news} articles, ${result.sizes.comments} comments, ${result.sizes.events} events, ${result.sizes.completions} completions in ${Date.now() - started} ms`
    : 'content already present: nothing seeded')
})
