/**
 * What a kind of write (a comment, an event sign-up, …) gives the group
 * commit: the SQL that stores a whole batch of its inputs at once.
 * Validation that needs no database happens before (in the route); what
 * needs the database (does the article exist?) happens here, per input.
 *
 * Two shapes:
 * - `statement` (the visitor writes, the hot path): the kind describes its
 *   inputs and how to store them, and its SQL builds each input's answer
 *   text too. The writer wraps that into ONE statement with the batch's
 *   idempotency claims and outbox row (write-batch.ts), so a batch costs one
 *   round trip: BEGIN, the statement, COMMIT pipelined together.
 * - `execute` (editor writes: rare upserts whose answer depends on what the
 *   upsert found): statements run one after another, answers built in JS.
 */
import type pg from 'pg'

/** The batch's connection, inside its transaction. */
export type Queryable = Pick<pg.ClientBase, 'query'>

export interface WriteAnswer {
  status: number
  /** The JSON answer; serialized once, and those bytes are what a replay repeats. */
  body: object
  /** Surrogate keys this write makes stale; they go to the batch's outbox row. */
  keys: string[]
}

export interface BatchContext {
  /** The one counter shard this batch bumps, so a batch locks at most one counter row. */
  counterShard: string
  /** A new Message-ID (`<uuid@domain>`) for an e-mail this batch queues (mail_messages). */
  messageId: () => string
}

/**
 * A kind's part of the batch statement. `values` are its parameters ($1 …
 * $n; the writer numbers its own after them).
 *
 * `input` is the body of a CTE named `input` with one row per input, in
 * order, and at least these columns:
 * - `ord` int: the input's position, 1-based (`unnest(…) with ordinality`);
 * - `ok` boolean: the input can be stored (false: `refusal` says why);
 * - `status` int, `response` text: the answer, exactly as sent and as
 *   stored for replays (built in SQL around the ids it draws: `ISO_NOW`);
 * - `keys` text[]: the surrogate keys storing it makes stale.
 * Volatile work (nextval) belongs here, where each row is computed once
 * (the writer materializes the CTE).
 *
 * `store` is one or more CTEs (`name as (…), …`) that store the rows of
 * `go`: the `input` rows that are ok and whose Idempotency-Key, if any, this
 * batch claimed. They see `input` and `go`, never each other's effects.
 *
 * `input` and `store` are the same text for every batch of a kind: the
 * statement is prepared once per connection under the kind's name; only
 * `values` change.
 */
export interface KindStatement {
  input: string
  store: string
  values: unknown[]
}

interface KindBase<I> {
  /** For metrics and logs. */
  name: string
}

export interface StatementKind<I> extends KindBase<I> {
  statement: (inputs: I[], context: BatchContext) => KindStatement
  /** The error of an input whose row came back not ok (e.g. 404 unknown article). */
  refusal: (input: I) => Error
  execute?: undefined
}

export interface ExecuteKind<I> extends KindBase<I> {
  /**
   * Stores `inputs` in order. Returns one entry per input: its answer, or an
   * Error that concerns that input alone. A thrown error fails the whole
   * batch, which the group commit then splits to find the offender.
   */
  execute: (db: Queryable, inputs: I[], context: BatchContext) => Promise<Array<WriteAnswer | Error>>
  statement?: undefined
}

export type WriteKind<I> = StatementKind<I> | ExecuteKind<I>

/**
 * The transaction's time (every row's `created_at` default) as JSON.stringify
 * writes a Date: `2026-12-01T17:24:26.123Z` (milliseconds, truncated).
 */
export const ISO_NOW = `to_char(now() at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')`

/**
 * The JSON of `fields` without its braces, between `,` and `,`: the middle of
 * an answer whose first and last members the SQL adds (`{"id":"…",` + this +
 * `,"createdAt":"…"}`).
 */
export function jsonMembers (fields: object): string {
  const text = JSON.stringify(fields)
  return text.slice(1, -1)
}
