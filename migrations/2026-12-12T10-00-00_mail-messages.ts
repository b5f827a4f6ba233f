// Frozen: the mail queue. A write that asks for an e-mail (an event sign-up,
// a completion with an address) commits its row here in the same transaction
// as its data; the mailer role claims due rows, sends them and marks them.
// Never edit; add a new file.
import { sql, type Kysely } from 'kysely'

export async function up (db: Kysely<any>): Promise<void> {
  await db.schema.createTable('mail_messages')
    .addColumn('id', 'bigserial', (c) => c.primaryKey())
    // Fixed at commit and sent with every attempt: a resend after a crash is the same message to its receiver.
    .addColumn('message_id', 'text', (c) => c.notNull().unique())
    .addColumn('kind', 'text', (c) => c.notNull().check(sql`kind in ('event-confirmation', 'certificate')`))
    // One address, one line: nothing here can become a second header or a second recipient.
    .addColumn('recipient', 'text', (c) => c.notNull().check(sql`recipient ~ '^[^\\s@<>(),;:"]+@[^\\s@<>(),;:"]+$' and length(recipient) <= 254`))
    .addColumn('payload', 'jsonb', (c) => c.notNull())
    .addColumn('status', 'text', (c) => c.notNull().defaultTo('queued').check(sql`status in ('queued', 'sending', 'sent', 'failed')`))
    .addColumn('attempts', 'integer', (c) => c.notNull().defaultTo(0))
    // When the row is next due: for 'queued' the next try, for 'sending' the end of its lease.
    .addColumn('next_attempt_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('claimed_until', 'timestamptz')
    .addColumn('claim_token', 'text')
    .addColumn('last_error', 'text')
    .addColumn('sent_at', 'timestamptz')
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .execute()
  // The mailers only ever scan what may still be sent.
  await sql`create index mail_messages_due_idx on mail_messages (next_attempt_at, id) where status in ('queued', 'sending')`.execute(db)
  await sql`create index mail_messages_sent_idx on mail_messages (sent_at) where status = 'sent'`.execute(db)

  // The provider's quota, shared by every mailer: one row, locked by each claim.
  // next_slot_at spaces sends 1/rate apart; hour_counts are the sends of the
  // current hour and the 24 before it, newest first, the newest starting at
  // hour_start: their sum covers every send of the last 24 hours.
  await db.schema.createTable('mail_rate')
    .addColumn('id', 'integer', (c) => c.primaryKey().check(sql`id = 1`))
    .addColumn('next_slot_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`'epoch'`))
    .addColumn('hour_start', 'timestamptz', (c) => c.notNull().defaultTo(sql`'epoch'`))
    .addColumn('hour_counts', sql`integer[]`, (c) => c.notNull().defaultTo(sql`array_fill(0, array[25])`))
    .execute()
  await sql`insert into mail_rate (id) values (1)`.execute(db)
}

export async function down (db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('mail_rate').ifExists().execute()
  await db.schema.dropTable('mail_messages').ifExists().execute()
}
