/**
 * Runs the migration files of this folder (ISO-timestamped names, frozen) with
 * kysely's Migrator. Files are discovered by name so a new migration is just a
 * new file.
 */
import { readdir } from 'node:fs/promises'
import { fileURLToPath, pathToFileURL } from 'node:url'
import path from 'node:path'
import { Migrator, type Kysely, type Migration, type MigrationProvider, type MigrationResultSet } from 'kysely'

const folder = path.dirname(fileURLToPath(import.meta.url))
const MIGRATION_FILE = /^\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}_[a-z0-9-_]+\.(ts|js)$/

class FolderProvider implements MigrationProvider {
  async getMigrations (): Promise<Record<string, Migration>> {
    const files = (await readdir(folder)).filter((f) => MIGRATION_FILE.test(f)).sort()
    const out: Record<string, Migration> = {}
    for (const file of files) {
      const mod = await import(pathToFileURL(path.join(folder, file)).href) as Migration
      out[file.replace(/\.(ts|js)$/, '')] = { up: mod.up, down: mod.down }
    }
    return out
  }
}

export function createMigrator (db: Kysely<any>): Migrator {
  return new Migrator({ db, provider: new FolderProvider() })
}

/** Migrates to the latest version; throws on error (so callers exit non-zero). */
export async function migrateToLatest (db: Kysely<any>): Promise<MigrationResultSet> {
  const result = await createMigrator(db).migrateToLatest()
  if (result.error) {
    const failed = result.results?.find((r) => r.status === 'Error')
    const err = result.error instanceof Error ? result.error : new Error(String(result.error))
    err.message = `migration ${failed?.migrationName ?? '(unknown)'} failed: ${err.message}`
    throw err
  }
  return result
}
