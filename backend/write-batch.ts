/**
 * One batch of writes, one transaction, on one connection of the writer's
 * pipelined pool. For the visitor writes (comments, sign-ups, completions)
 * that is ONE round trip: BEGIN, one statement per kind, and COMMIT with the
 * commit position are written together and answered together.
 *
 * Each kind's statement does it all (batchStatement below): it draws the
 * ids and builds every answer's text in SQL, claims the batch's idempotency
 * keys with those answers already in place (INSERT … ON CONFLICT, in sorted
 * order so batches never wait on each other in a cycle; a key another
 * transaction holds makes the claim wait for it to end), stores the inputs
 * whose keys it claimed (one multi-row INSERT … SELECT FROM unnest), and
 * inserts one outbox row naming the surrogate keys it made stale.
 *
 * A key held elsewhere is answered after the commit from that key's stored
 * answer (a replay, or a 409 when the request differs); so is a keyed write
 * the kind refused (an unknown article), because a replay must repeat the
 * first answer even if the article is gone since.
 *
 * Editor writes (`execute` kinds: upserts whose answer depends on what they
 * found) take the long way before the statements, in the same transaction:
 * claim their keys, run, then store answers and an outbox row.
 *
 * Within the batch, writes with the same key are folded before the database
 * sees them: the first one runs, the others get its answer as a replay (or a
 * 409 when their request differs).
 */
import { randomUUID } from 'node:crypto'
import type pg from 'pg'
import { COUNTER_SHARDS, counterShard, PARTICIPANTS } from '../common/counters.js'
import { Errors, isConnectionError } from '../common/errors.js'
import { claimKeys, finishBatch, storedAnswers, type StoredAnswer } from './idempotency.js'
import type { WalPosition } from './wal.js'
import type { BatchContext, ExecuteKind, KindStatement, StatementKind, WriteAnswer, WriteKind } from './write-kind.js'

export interface PendingWrite {
  kind: WriteKind<any>
  input: unknown
  /** Idempotency-Key and request hash (the client's key, or one of the writer's own: write.ts). */
  key?: string
  hash?: string
  /** How long the key is remembered, when not the configured TTL (the writer's own keys live only as long as its retries). */
  ttlSeconds?: number
}

export interface WriteOutcome {
  status: number
  /** The JSON answer exactly as sent (and as stored for replays). */
  text: string
  replayed: boolean
  /** The primary's WAL position after the commit, when known. */
  lsn?: string
  /** This write made pages stale: its batch committed an outbox row for it. */
  stale: boolean
}

export type BatchResult = WriteOutcome | Error

export interface WriteBatchOptions {
  pool: pg.Pool
  idempotencyTtlSeconds: number
  wal: WalPosition
  /** Right-hand side of the Message-IDs of e-mails queued by this batch. */
  mailDomain: string
}

interface StatementRow { ord: number, ok: boolean, status: number, response: string, written: boolean }

export async function runWriteBatch (items: PendingWrite[], options: WriteBatchOptions): Promise<BatchResult[]> {
  const results: Array<BatchResult | undefined> = new Array(items.length)

  // Fold same-key writes: `leader` maps a key to the first write that carries it.
  const leader = new Map<string, number>()
  const followers: Array<[number, number]> = []
  for (let i = 0; i < items.length; i++) {
    const key = items[i].key
    if (key === undefined) continue
    const first = leader.get(key)
    if (first === undefined) leader.set(key, i)
    else if (items[first].hash === items[i].hash) followers.push([i, first])
    else results[i] = new Errors.IDEMPOTENCY_MISMATCH()
  }
  const isFollower = new Uint8Array(items.length)
  for (const [i] of followers) isFollower[i] = 1

  // The writes that reach the database, by kind, in arrival order.
  const byKind = new Map<WriteKind<any>, number[]>()
  for (let i = 0; i < items.length; i++) {
    if (results[i] !== undefined || isFollower[i] === 1) continue
    const list = byKind.get(items[i].kind)
    if (list) list.push(i)
    else byKind.set(items[i].kind, [i])
  }
  const executeKinds: Array<[ExecuteKind<any>, number[]]> = []
  const statementKinds: Array<[StatementKind<any>, number[]]> = []
  for (const [kind, indexes] of byKind) {
    if (kind.execute) executeKinds.push([kind, indexes])
    else statementKinds.push([kind as StatementKind<any>, indexes])
  }
  const context: BatchContext = {
    counterShard: counterShard(PARTICIPANTS, Math.floor(Math.random() * COUNTER_SHARDS)),
    messageId: () => `<${randomUUID()}@${options.mailDomain}>`
  }
  /** Keyed writes to answer from their key's stored answer once the batch committed (and whether the kind refused them). */
  const lookUp: Array<[number, boolean]> = []

  const client = await options.pool.connect()
  let broken: Error | undefined
  try {
    let begun = false
    if (executeKinds.length > 0) {
      await client.query('begin')
      begun = true
      try {
        await runExecuteKinds(client, items, results, executeKinds, context, options.idempotencyTtlSeconds)
      } catch (err) {
        await client.query('rollback').catch((rollbackError: Error) => { broken = rollbackError })
        throw err
      }
    }

    const statements = statementKinds.map(([kind, indexes]) => {
      const keys = indexes.map((i) => items[i].key)
      const statement = batchStatement(kind.statement(indexes.map((i) => items[i].input), context), keys, indexes.map((i) => items[i].hash), indexes.map((i) => items[i].ttlSeconds ?? options.idempotencyTtlSeconds))
      return { ...statement, name: statementName(client, kind, statement.keyed) }
    })
    const answers = await commitWith(client, begun, statements, options.wal)

    for (let s = 0; s < statementKinds.length; s++) {
      const [kind, indexes] = statementKinds[s]
      const rows = answers.rows[s]
      for (let j = 0; j < indexes.length; j++) {
        const i = indexes[j]
        const row = rows[j]
        if (row.ok && row.written) results[i] = { status: row.status, text: row.response, replayed: false, stale: true }
        else if (items[i].key !== undefined) lookUp.push([i, !row.ok])
        else results[i] = kind.refusal(items[i].input)
      }
    }
    for (const r of results) if (r !== undefined && !(r instanceof Error)) r.lsn = answers.lsn

    if (lookUp.length > 0) {
      // After the commit: a key another transaction held is committed by now
      // (the claim waited for it), or was given up, and then this write got it.
      // Rare (double clicks, retries): one more round trip.
      // The batch is committed: a failure here is only these writes' (a retry replays them).
      try {
        const stored = await readStoredAnswers(client, lookUp.map(([i]) => items[i].key!))
        for (const [i, refused] of lookUp) results[i] = fromStored(items[i], refused, stored.get(items[i].key!), answers.lsn)
      } catch (err) {
        if (isConnectionError(err)) broken = err as Error
        for (const [i] of lookUp) results[i] = new Errors.UNAVAILABLE('the answer to this Idempotency-Key could not be read; retry')
      }
    }
  } catch (err) {
    // A connection that failed mid-transaction is not given back to the pool.
    broken ??= isConnectionError(err) ? err as Error : undefined
    throw err
  } finally {
    client.release(broken)
  }

  for (const [i, first] of followers) {
    const r = results[first]!
    results[i] = r instanceof Error ? r : { ...r, replayed: true, stale: false }
  }
  return results as BatchResult[]
}

/**
 * A keyed write answered from its key's stored answer: a replay, or a 409
 * when the request differs. Without one, a write the kind refused gets its
 * own refusal; a held key that vanished meanwhile (its holder failed and the
 * claim was released) is worth a retry.
 */
function fromStored (write: PendingWrite, refused: boolean, previous: StoredAnswer | undefined, lsn: string | undefined): BatchResult {
  if (previous === undefined || previous.status === 0) {
    return refused
      ? (write.kind as StatementKind<unknown>).refusal(write.input)
      : new Errors.UNAVAILABLE('a concurrent write with this Idempotency-Key just ended; retry')
  }
  if (previous.hash !== write.hash) return new Errors.IDEMPOTENCY_MISMATCH()
  return { status: previous.status, text: previous.response, replayed: true, lsn, stale: false }
}

/**
 * The stored answers of `keys`, read in a transaction of its own: the
 * embedded database serves every connection from one session and keeps a
 * connection's statements together only inside a transaction.
 */
async function readStoredAnswers (client: pg.PoolClient, keys: string[]): Promise<Map<string, StoredAnswer>> {
  if ((client as unknown as { pipeline?: boolean }).pipeline !== true) {
    await client.query('begin')
    try {
      return await storedAnswers(client, keys)
    } finally {
      await client.query('commit')
    }
  }
  const sent = corked(client, () => [client.query('begin'), storedAnswers(client, keys), client.query('commit')] as const)
  const settled = await Promise.allSettled(sent)
  const failed = settled.find((s) => s.status === 'rejected')
  if (failed) throw (failed as PromiseRejectedResult).reason
  return (settled[1] as PromiseFulfilledResult<Map<string, StoredAnswer>>).value
}

/**
 * Runs the statements and the COMMIT. On a pipelined connection everything
 * (BEGIN too, unless the transaction is already open) is written at once:
 * after a failed statement the server refuses the rest and the COMMIT
 * answers ROLLBACK, so the first real error is the batch's.
 */
async function commitWith (client: pg.PoolClient, begun: boolean, statements: Array<{ name: string, text: string, values: unknown[] }>, wal: WalPosition): Promise<{ rows: StatementRow[][], lsn: string | undefined }> {
  if ((client as unknown as { pipeline?: boolean }).pipeline === true) {
    const sent = corked(client, () => {
      const sent: Array<Promise<unknown>> = []
      if (!begun) sent.push(client.query('begin'))
      for (const s of statements) sent.push(client.query<StatementRow>({ name: s.name, text: s.text, values: s.values }))
      sent.push(wal.commit(client))
      return sent
    })
    const settled = await Promise.allSettled(sent)
    const failed = settled.find((s) => s.status === 'rejected' && (s.reason as { code?: string })?.code !== '25P02') ??
      settled.find((s) => s.status === 'rejected')
    if (failed) throw (failed as PromiseRejectedResult).reason
    const offset = begun ? 0 : 1
    return {
      rows: statements.map((_s, k) => ((settled[offset + k] as PromiseFulfilledResult<pg.QueryResult<StatementRow>>).value.rows)),
      lsn: (settled[settled.length - 1] as PromiseFulfilledResult<string | undefined>).value
    }
  }
  // One statement at a time (a pool without pipelining).
  try {
    if (!begun) await client.query('begin')
    const rows: StatementRow[][] = []
    for (const s of statements) rows.push((await client.query<StatementRow>({ name: s.name, text: s.text, values: s.values })).rows)
    return { rows, lsn: await wal.commit(client) }
  } catch (err) {
    await client.query('rollback').catch(() => {})
    throw err
  }
}

const connectionIds = new WeakMap<object, number>()
let lastConnectionId = 0

/**
 * The name a kind's batch statement is prepared under on this connection:
 * prepared once, it is parsed and planned once, not per batch (planning the
 * statement cost the server about as much as running it). Names are per
 * connection because the embedded database serves every connection from one
 * session, where two connections preparing one name would collide.
 */
function statementName (client: pg.PoolClient, kind: StatementKind<unknown>, keyed: boolean): string {
  let id = connectionIds.get(client)
  if (id === undefined) connectionIds.set(client, id = ++lastConnectionId)
  return `fc_w${id}_${kind.name}_${keyed ? 'keyed' : 'plain'}`
}

/**
 * Queries sent in `send` leave in one write: a pipelined client writes each
 * query on its own (one syscall, and one wake-up of the server, per query)
 * unless its socket is corked while they are queued.
 */
function corked<T> (client: pg.PoolClient, send: () => T): T {
  const stream = (client as unknown as { connection?: { stream?: { cork?: () => void, uncork?: () => void } } }).connection?.stream
  stream?.cork?.()
  try {
    return send()
  } finally {
    stream?.uncork?.()
  }
}

/**
 * A kind's statement inside the batch's: its `input` rows, the claims of
 * their Idempotency-Keys (only of inputs it can store; the claim holds the
 * answer already), `go` (what this batch stores), the kind's `store`, one
 * outbox row, and per input: its answer, and whether it was stored.
 */
export function batchStatement (kind: KindStatement, keys: Array<string | undefined>, hashes: Array<string | undefined>, ttlSeconds: number[]): { text: string, values: unknown[], keyed: boolean } {
  const outbox = `outboxed as (
    insert into outbox (keys) select array(select distinct k from go, unnest(go.keys) as k)
    where exists (select 1 from go)
  )`
  if (keys.every((k) => k === undefined)) {
    return {
      text: `with ${kind.input},
  go as (select * from input where ok),
  ${kind.store},
  ${outbox}
  select ord, ok, status, response, ok as written from input order by ord`,
      values: kind.values,
      keyed: false
    }
  }
  const n = kind.values.length
  return {
    text: `with ${kind.input},
  idem as (select * from unnest($${n + 1}::text[], $${n + 2}::text[], $${n + 3}::int[]) with ordinality as x(key, hash, ttl, ord)),
  claimed as (
    insert into idempotency_keys (key, request_hash, status, response, expires_at)
    select x.key, x.hash, i.status, i.response, now() + make_interval(secs => x.ttl)
    from input i join idem x on x.ord = i.ord
    where i.ok and x.key is not null
    order by x.key
    on conflict (key) do update
      set request_hash = excluded.request_hash, status = excluded.status, response = excluded.response, created_at = now(), expires_at = excluded.expires_at
      where idempotency_keys.expires_at < now()
    returning key
  ),
  go as materialized (
    select i.* from input i join idem x on x.ord = i.ord
    where i.ok and (x.key is null or x.key in (select key from claimed))
  ),
  ${kind.store},
  ${outbox}
  select ord, ok, status, response, ord in (select ord from go) as written from input order by ord`,
    values: [...kind.values, keys, hashes, ttlSeconds],
    keyed: true
  }
}

/**
 * Editor writes: claim their keys, answer the ones held elsewhere from the
 * stored answer, run the rest, then store answers, release the claims of
 * failed writes and insert the outbox row (one statement).
 */
async function runExecuteKinds (client: pg.PoolClient, items: PendingWrite[], results: Array<BatchResult | undefined>, kinds: Array<[ExecuteKind<any>, number[]]>, context: BatchContext, ttlSeconds: number): Promise<void> {
  const keyed = new Map<string, number>()
  for (const [, indexes] of kinds) for (const i of indexes) if (items[i].key !== undefined) keyed.set(items[i].key!, i)
  const claimed = new Set<string>()
  if (keyed.size > 0) {
    const keys = [...keyed.keys()].sort()
    const got = await claimKeys(client, keys, keys.map((k) => items[keyed.get(k)!].hash!), ttlSeconds)
    for (const k of got) claimed.add(k)
    const held = keys.filter((k) => !got.has(k))
    if (held.length > 0) {
      const stored = await storedAnswers(client, held)
      for (const k of held) {
        const i = keyed.get(k)!
        const previous = stored.get(k)
        if (previous === undefined) results[i] = new Errors.UNAVAILABLE('a concurrent write with this Idempotency-Key just ended; retry')
        else if (previous.hash !== items[i].hash) results[i] = new Errors.IDEMPOTENCY_MISMATCH()
        else results[i] = { status: previous.status, text: previous.response, replayed: true, stale: false }
      }
    }
  }
  const outboxKeys = new Set<string>()
  for (const [kind, all] of kinds) {
    const indexes = all.filter((i) => results[i] === undefined)
    if (indexes.length === 0) continue
    const answers = await kind.execute(client, indexes.map((i) => items[i].input), context)
    for (let j = 0; j < indexes.length; j++) {
      const answer: WriteAnswer | Error = answers[j]
      if (answer instanceof Error) { results[indexes[j]] = answer; continue }
      results[indexes[j]] = { status: answer.status, text: JSON.stringify(answer.body), replayed: false, stale: answer.keys.length > 0 }
      for (const k of answer.keys) outboxKeys.add(k)
    }
  }
  const done = { keys: [] as string[], statuses: [] as number[], responses: [] as string[] }
  const released: string[] = []
  for (const [key, i] of keyed) {
    if (!claimed.has(key)) continue
    const r = results[i]!
    if (r instanceof Error) released.push(key)
    else { done.keys.push(key); done.statuses.push(r.status); done.responses.push(r.text) }
  }
  if (done.keys.length > 0 || released.length > 0 || outboxKeys.size > 0) {
    await finishBatch(client, done, released, [...outboxKeys])
  }
}
