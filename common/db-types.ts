/**
 * Table types for kysely. The migration files are the truth; these mirror them.
 */
import type { ColumnType, Generated, Insertable, Selectable } from 'kysely'

type Timestamp = ColumnType<Date, Date | string | undefined, Date | string>

export interface TutorialsTable {
  id: Generated<number>
  slug: string
  title: string
  summary: string
  body_html: string
  level: 'beginner' | 'intermediate' | 'advanced'
  min_age: number
  max_age: number
  minutes: number
  partner: string
  published_at: Timestamp
  updated_at: Timestamp
}

export interface NewsTable {
  id: Generated<number>
  slug: string
  title: string
  summary: string
  body_html: string
  author: string
  published_at: Timestamp
  updated_at: Timestamp
}

export interface CommentsTable {
  id: Generated<string>
  news_id: number
  author: string
  body: string
  created_at: Timestamp
}

export interface EventsTable {
  id: Generated<string>
  organizer: string
  email: string
  school: string
  country: string
  city: string
  expected_participants: number
  event_date: ColumnType<string, string, string>
  created_at: Timestamp
}

export interface CompletionsTable {
  id: string
  tutorial_id: number
  name: string
  country: string
  created_at: Timestamp
}

export interface CountersTable {
  name: string
  value: ColumnType<string, number | string, number | string>
}

export interface IdempotencyKeysTable {
  key: string
  request_hash: string
  status: number
  /** The JSON answer exactly as it was sent (replays repeat these bytes). */
  response: string
  created_at: Timestamp
  expires_at: Timestamp
}

export interface OutboxTable {
  id: Generated<string>
  keys: string[]
  created_at: Timestamp
  published_at: Timestamp | null
  /** When the CDN purger turned the row into jobs (cdn_purges); null: not yet. */
  cdn_queued_at: ColumnType<Date | null, never, Date | null>
}

export type CdnPurgeStatus = 'queued' | 'sending' | 'done'

/** One CDN's purge job: the keys of one or more writes (purger/queue.ts). */
export interface CdnPurgesTable {
  id: Generated<string>
  cdn: string
  keys: string[]
  committed_at: Timestamp
  status: ColumnType<CdnPurgeStatus, CdnPurgeStatus | undefined, CdnPurgeStatus>
  attempts: Generated<number>
  next_attempt_at: Generated<Date>
  claim_token: string | null
  last_error: string | null
  done_at: Date | null
  created_at: Generated<Date>
}

export type MailKind = 'event-confirmation' | 'certificate'
export type MailStatus = 'queued' | 'sending' | 'sent' | 'failed'

export interface MailMessagesTable {
  id: Generated<string>
  /** `<uuid@domain>`, fixed at commit: every attempt sends the same Message-ID. */
  message_id: string
  kind: MailKind
  recipient: string
  payload: ColumnType<Record<string, unknown>, string, string>
  status: Generated<MailStatus>
  attempts: Generated<number>
  /** For 'queued': the next try; for 'sending': the end of the claim's lease. */
  next_attempt_at: Generated<Date>
  claimed_until: Date | null
  claim_token: string | null
  last_error: string | null
  sent_at: Date | null
  created_at: Generated<Date>
}

export interface MailRateTable {
  id: number
  next_slot_at: Date
  hour_start: Date
  hour_counts: number[]
}

export interface Database {
  tutorials: TutorialsTable
  news: NewsTable
  comments: CommentsTable
  events: EventsTable
  completions: CompletionsTable
  counters: CountersTable
  idempotency_keys: IdempotencyKeysTable
  outbox: OutboxTable
  mail_messages: MailMessagesTable
  mail_rate: MailRateTable
  cdn_purges: CdnPurgesTable
}

export type Tutorial = Selectable<TutorialsTable>
export type NewsArticle = Selectable<NewsTable>
export type Comment = Selectable<CommentsTable>
export type EventRow = Selectable<EventsTable>
export type Completion = Selectable<CompletionsTable>
export type NewTutorial = Insertable<TutorialsTable>
export type NewNews = Insertable<NewsTable>
