// Frozen: the initial schema of flashcrowd. Never edit; add a new file.
import { sql, type Kysely } from 'kysely'

export async function up (db: Kysely<any>): Promise<void> {
  await db.schema.createTable('tutorials')
    .addColumn('id', 'serial', (c) => c.primaryKey())
    .addColumn('slug', 'text', (c) => c.notNull().unique())
    .addColumn('title', 'text', (c) => c.notNull())
    .addColumn('summary', 'text', (c) => c.notNull())
    .addColumn('body_html', 'text', (c) => c.notNull())
    .addColumn('level', 'text', (c) => c.notNull().check(sql`level in ('beginner', 'intermediate', 'advanced')`))
    .addColumn('min_age', 'integer', (c) => c.notNull())
    .addColumn('max_age', 'integer', (c) => c.notNull())
    .addColumn('minutes', 'integer', (c) => c.notNull())
    .addColumn('partner', 'text', (c) => c.notNull())
    .addColumn('published_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('updated_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .execute()
  await db.schema.createIndex('tutorials_published_idx').on('tutorials').columns(['published_at desc', 'id desc']).execute()
  await db.schema.createIndex('tutorials_filter_idx').on('tutorials').columns(['level', 'minutes']).execute()

  await db.schema.createTable('news')
    .addColumn('id', 'serial', (c) => c.primaryKey())
    .addColumn('slug', 'text', (c) => c.notNull().unique())
    .addColumn('title', 'text', (c) => c.notNull())
    .addColumn('summary', 'text', (c) => c.notNull())
    .addColumn('body_html', 'text', (c) => c.notNull())
    .addColumn('author', 'text', (c) => c.notNull())
    .addColumn('published_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('updated_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .execute()
  await db.schema.createIndex('news_published_idx').on('news').columns(['published_at desc', 'id desc']).execute()

  await db.schema.createTable('comments')
    .addColumn('id', 'bigserial', (c) => c.primaryKey())
    .addColumn('news_id', 'integer', (c) => c.notNull().references('news.id').onDelete('cascade'))
    .addColumn('author', 'text', (c) => c.notNull())
    .addColumn('body', 'text', (c) => c.notNull())
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .execute()
  // The article page lists comments newest first, paginated.
  await db.schema.createIndex('comments_news_created_idx').on('comments').columns(['news_id', 'created_at desc', 'id desc']).execute()

  await db.schema.createTable('events')
    .addColumn('id', 'bigserial', (c) => c.primaryKey())
    .addColumn('organizer', 'text', (c) => c.notNull())
    .addColumn('email', 'text', (c) => c.notNull())
    .addColumn('school', 'text', (c) => c.notNull())
    .addColumn('country', 'char(2)', (c) => c.notNull())
    .addColumn('city', 'text', (c) => c.notNull())
    .addColumn('expected_participants', 'integer', (c) => c.notNull().check(sql`expected_participants > 0`))
    .addColumn('event_date', 'date', (c) => c.notNull())
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .execute()
  await db.schema.createIndex('events_country_idx').on('events').columns(['country', 'event_date']).execute()

  await db.schema.createTable('completions')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('tutorial_id', 'integer', (c) => c.notNull().references('tutorials.id').onDelete('cascade'))
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('country', 'char(2)', (c) => c.notNull())
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .execute()
  await db.schema.createIndex('completions_tutorial_idx').on('completions').column('tutorial_id').execute()

  await db.schema.createTable('counters')
    .addColumn('name', 'text', (c) => c.primaryKey())
    .addColumn('value', 'bigint', (c) => c.notNull().defaultTo(0))
    .execute()

  await db.schema.createTable('idempotency_keys')
    .addColumn('key', 'text', (c) => c.primaryKey())
    .addColumn('request_hash', 'text', (c) => c.notNull())
    .addColumn('status', 'integer', (c) => c.notNull())
    .addColumn('response', 'jsonb', (c) => c.notNull())
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('expires_at', 'timestamptz', (c) => c.notNull())
    .execute()
  await db.schema.createIndex('idempotency_keys_expires_idx').on('idempotency_keys').column('expires_at').execute()

  await db.schema.createTable('outbox')
    .addColumn('id', 'bigserial', (c) => c.primaryKey())
    .addColumn('keys', sql`text[]`, (c) => c.notNull())
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('published_at', 'timestamptz')
    .execute()
  // The publisher only ever scans what is not yet published.
  await sql`create index outbox_unpublished_idx on outbox (id) where published_at is null`.execute(db)
}

export async function down (db: Kysely<any>): Promise<void> {
  for (const table of ['outbox', 'idempotency_keys', 'counters', 'completions', 'events', 'comments', 'news', 'tutorials']) {
    await db.schema.dropTable(table).ifExists().execute()
  }
}
