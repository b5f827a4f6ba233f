/**
 * What a kind of write (a comment, an event sign-up, …) gives the group
 * commit: the statements that store a whole batch of its inputs at once.
 * Validation that needs no database happens before (in the route); what
 * needs the database (does the article exist?) happens here, per input.
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

export interface WriteKind<I> {
  /** For metrics and logs. */
  name: string
  /**
   * Stores `inputs` with as few statements as the kind allows (one multi-row
   * statement for the hot kinds). Returns one entry per input, in order: its
   * answer, or an Error that concerns that input alone (e.g. 404 unknown
   * article). A thrown error fails the whole batch, which the group commit
   * then splits to find the offender.
   */
  execute: (db: Queryable, inputs: I[], context: BatchContext) => Promise<Array<WriteAnswer | Error>>
}
