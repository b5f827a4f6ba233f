/**
 * Shared by `npm run migrate` and `npm run seed`: reads DATABASE_URL (the
 * embedded database when unset), runs `work` on a kysely handle, reports an
 * error as a message and a non-zero exit code, and always closes.
 */
import { Type } from '@sinclair/typebox'
import { loadConfigOrExit, DatabaseEnv } from '../common/config.js'
import { createDatabase, type DatabaseHandle } from '../common/db.js'
import { resolveDatabaseUrl } from '../common/database-url.js'

export async function runDatabaseCommand (name: string, work: (handle: DatabaseHandle) => Promise<void>): Promise<void> {
  const config = loadConfigOrExit(Type.Object({ DATABASE_URL: DatabaseEnv.DATABASE_URL, FLASHCROWD_STATE_DIR: DatabaseEnv.FLASHCROWD_STATE_DIR }), name)
  const target = await resolveDatabaseUrl(config.DATABASE_URL, console.log, config.FLASHCROWD_STATE_DIR)
  const handle = createDatabase({ url: target.url, max: 2, statementTimeoutMs: 600_000 })
  try {
    await work(handle)
  } catch (err) {
    console.error(`${name}: ${(err as Error).message}`)
    process.exitCode = 1
  } finally {
    await handle.close()
    await target.close()
  }
}
