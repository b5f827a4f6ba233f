// Frozen: an idempotent replay must answer with the first answer's exact
// bytes, and jsonb keeps neither key order nor spacing. The answer is kept as
// the text that was sent. Never edit; add a new file.
import { sql, type Kysely } from 'kysely'

export async function up (db: Kysely<any>): Promise<void> {
  await sql`alter table idempotency_keys alter column response type text using response::text`.execute(db)
}

export async function down (db: Kysely<any>): Promise<void> {
  await sql`alter table idempotency_keys alter column response type jsonb using response::jsonb`.execute(db)
}
