/**
 * `npm run purger`: reads config, builds the app, listens (health and
 * metrics), and closes gracefully (stop claiming → finish the requests in
 * flight → close the database pool). Jobs not acknowledged stay queued.
 */
import { PurgerEnv, checkPurgerConfig } from './config.js'
import { buildApp } from './app.js'
import { joinTierDatabase } from '../common/database-url.js'
import { ConfigError, loadConfigOrExit } from '../common/config.js'
import { gracefulShutdown, listenOrExit } from '../common/shutdown.js'

const loaded = loadConfigOrExit(PurgerEnv, 'purger')
try {
  checkPurgerConfig(loaded)
} catch (err) {
  if (!(err instanceof ConfigError)) throw err
  console.error(`purger: ${err.message}`)
  process.exit(2)
}
const config = loaded

// The purger never opens the embedded database itself: it joins the tier's (the backend owns it).
const { database, close: closeDatabase } = await joinTierDatabase(config, 'purger')

const app = await buildApp({ config, database })
app.log.info({ cdns: app.purger.cdns }, `purging ${app.purger.cdns.join(' and ')} after every write`)

gracefulShutdown({ delayMs: config.PURGER_SHUTDOWN_TIMEOUT_MS + 5000, log: app.log }, async () => {
  await app.close()
  await closeDatabase()
})

await listenOrExit(app, { host: config.HOST, port: config.PORT })
