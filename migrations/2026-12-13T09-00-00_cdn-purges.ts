// Frozen: the CDN purge queue (issue 24). The purger takes each published
// outbox row once (cdn_queued_at), turns its keys into one job per CDN it
// purges, and works the jobs off with claims, retries and back-off, as the
// mailer does with mail_messages. Never edit; add a new file.
import { sql, type Kysely } from 'kysely'

export async function up (db: Kysely<any>): Promise<void> {
  // When a purger turned the row into CDN jobs; null: not yet (or no purger runs).
  await db.schema.alterTable('outbox').addColumn('cdn_queued_at', 'timestamptz').execute()
  // The purger scans only what the bus has carried and no purger has taken.
  await sql`create index outbox_cdn_pending_idx on outbox (id) where cdn_queued_at is null and published_at is not null`.execute(db)

  await db.schema.createTable('cdn_purges')
    .addColumn('id', 'bigserial', (c) => c.primaryKey())
    // Which CDN: flashcrowd, fastly, cloudflare or cloudfront.
    .addColumn('cdn', 'text', (c) => c.notNull())
    .addColumn('keys', sql`text[]`, (c) => c.notNull())
    // The oldest commit among the writes the job carries (purge lag runs from it).
    .addColumn('committed_at', 'timestamptz', (c) => c.notNull())
    .addColumn('status', 'text', (c) => c.notNull().defaultTo('queued').check(sql`status in ('queued', 'sending', 'done')`))
    .addColumn('attempts', 'integer', (c) => c.notNull().defaultTo(0))
    // For 'queued' the next try; for 'sending' the end of its lease.
    .addColumn('next_attempt_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('claim_token', 'text')
    .addColumn('last_error', 'text')
    .addColumn('done_at', 'timestamptz')
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .execute()
  await sql`create index cdn_purges_due_idx on cdn_purges (cdn, next_attempt_at, id) where status in ('queued', 'sending')`.execute(db)
  await sql`create index cdn_purges_done_idx on cdn_purges (done_at) where status = 'done'`.execute(db)
}

export async function down (db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('cdn_purges').ifExists().execute()
  await sql`drop index if exists outbox_cdn_pending_idx`.execute(db)
  await db.schema.alterTable('outbox').dropColumn('cdn_queued_at').execute()
}
