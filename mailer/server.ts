/**
 * `npm run mailer`: reads config, builds the app, listens (health and
 * metrics), and closes gracefully (stop claiming → finish the sends in flight
 * → close the SMTP pool and the database pool).
 */
import path from 'node:path'
import { setPriority } from 'node:os'
import { MailerEnv } from './config.js'
import { buildApp } from './app.js'
import { folderTransport, smtpTransport, type MailTransport } from './transport.js'
import { joinTierDatabase } from '../common/database-url.js'
import { loadConfigOrExit } from '../common/config.js'
import { gracefulShutdown, listenOrExit } from '../common/shutdown.js'

const config = loadConfigOrExit(MailerEnv, 'mailer')
// Lower priority than the roles that answer visitors (MAILER_NICE): raising
// one's own niceness needs no privilege.
let niceProblem: string | undefined
try { if (config.MAILER_NICE > 0) setPriority(config.MAILER_NICE) } catch (err) { niceProblem = (err as Error).message }

// The mailer never opens the embedded database itself: it joins the tier's (the backend owns it).
const { database, close: closeDatabase } = await joinTierDatabase(config, 'mailer')
const transport: MailTransport = config.SMTP_URL
  ? smtpTransport({
    url: config.SMTP_URL,
    rejectUnauthorized: config.MAILER_SMTP_TLS_REJECT_UNAUTHORIZED,
    requireTLS: config.MAILER_SMTP_REQUIRE_TLS,
    poolSize: config.MAILER_SMTP_POOL_SIZE,
    timeoutMs: config.MAILER_SMTP_TIMEOUT_MS
  })
  : folderTransport(path.join(config.FLASHCROWD_STATE_DIR, 'mail'))

const app = await buildApp({ config, database, transport })
app.log.info({ transport: transport.kind, to: transport.description }, transport.kind === 'smtp'
  ? `sending through ${transport.description}`
  : `no SMTP_URL: messages are written to ${transport.description} (one .eml file per Message-ID)`)
if (niceProblem !== undefined) app.log.warn({ err: niceProblem }, `could not lower the mailer's priority to niceness ${config.MAILER_NICE}; it runs at the same priority as the other roles`)

// Stop claiming, let the sends in flight finish and be marked, close the pools; bounded.
gracefulShutdown({ delayMs: config.MAILER_SHUTDOWN_TIMEOUT_MS + 5000, log: app.log }, async () => {
  await app.close()
  await closeDatabase()
})

await listenOrExit(app, { host: config.HOST, port: config.PORT })
