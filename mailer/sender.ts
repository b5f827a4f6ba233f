/**
 * The mailer's loop: claim due messages, send each at its slot, mark it.
 *
 *   claim   one transaction: lock the quota row (quota.ts), take up to the
 *           granted number of due rows `for update skip locked`, mark them
 *           'sending' under this claim's token with a lease (claimed_until),
 *           count them against the quota; commit
 *   send    each through the transport with its stable Message-ID
 *   mark    'sent' · 4xx or unreachable: back to 'queued' after an
 *           exponential back-off with jitter · 5xx: 'failed'; each update
 *           only holds while the row still carries this claim's token.
 *           'sent' marks that arrive while one is being written are
 *           gathered into the next (one UPDATE, one commit for them all):
 *           a mark per message would be a WAL flush per message, and those
 *           flushes queue with the sign-ups' own commits on the primary
 *           during the rush that queued the messages
 *
 * Several mailers never send the same row at once: a claimed row is
 * 'sending' with a lease in the future, which no other claim takes. A mailer
 * that dies leaves its rows 'sending'; when the lease ends they are due
 * again and the next claim resends them with the same Message-ID
 * (at-least-once; the receiver can drop the copy by its Message-ID). That is
 * the one duplicate left: a crash (or a lost database) between the SMTP
 * server's "250 OK" and the mark. The README says why it is rare.
 */
import type pg from 'pg'
import { isConnectionError, isFailover } from '../common/errors.js'
import { ClaimTokens } from '../common/claim-tokens.js'
import { GroupCommit } from '../common/group-commit.js'
import { consume, grant, type QuotaLimits } from './quota.js'
import { renderMessage, TemplateError, type SiteLinks } from './templates.js'
import type { MailTransport } from './transport.js'

export interface ClaimedMessage {
  id: string
  messageId: string
  kind: string
  recipient: string
  payload: unknown
  /** Attempts so far, this one included. */
  attempts: number
  createdAt: Date
  /** The row was 'sending' under an expired lease: its last attempt may have reached the server. */
  reclaimed: boolean
  /** When this message may go (its quota slot), ms since the epoch. */
  slotAt: number
  /** This claim's token: a mark holds only while the row still carries it. */
  token: string
}

export type Outcome = 'sent' | 'retry' | 'failed' | 'lost'

export interface SenderEvents {
  sent?: (m: ClaimedMessage) => void
  retry?: (m: ClaimedMessage, error: string, delayMs: number) => void
  failed?: (m: ClaimedMessage, error: string) => void
  /** Claims of rows whose previous attempt may have reached the server (a mailer died or lost its lease). */
  reclaimed?: (count: number) => void
  /** The claim's lease ended before the mark: another mailer may own the row now; this result was not recorded. */
  lost?: (m: ClaimedMessage) => void
  error?: (err: unknown, what: string) => void
}

export interface SenderOptions {
  pool: pg.Pool
  transport: MailTransport
  links: SiteLinks
  from: string
  replyTo?: string
  limits: QuotaLimits
  batchMax: number
  /** Sends in flight at once. */
  concurrency: number
  leaseMs: number
  pollMs: number
  retryBaseMs: number
  retryMaxMs: number
  /** A message still failing temporarily this long after its write is failed for good (0: never). */
  giveUpAfterMs: number
  /** Sent rows older than this are deleted (0: kept). */
  retainSentMs: number
  /** Clock, random source and wait, injectable so tests control time. */
  now?: () => number
  random?: () => number
  sleep?: (ms: number) => Promise<void>
  events?: SenderEvents
}

export interface Round {
  claimed: number
  sent: number
  retried: number
  failed: number
  /** Nothing claimed: how long until something may be due (quota, or the poll interval). */
  waitMs: number
}

/** nodemailer's codes for "the server could not be reached or talked to": the whole server, not this message. */
const UNREACHABLE = new Set(['ECONNECTION', 'ETIMEDOUT', 'ESOCKET', 'EDNS', 'ETLS', 'EAUTH', 'EPROTOCOL'])

interface SendError { responseCode?: number, code?: string, message?: string, response?: string }

/** 'permanent' for an SMTP 5xx about this message; anything else may pass later. */
export function classify (err: unknown): 'permanent' | 'temporary' {
  if (err instanceof TemplateError) return 'permanent'
  const e = (err ?? {}) as SendError
  // A refused login is the operator's to fix, not the message's fault: keep it.
  if (e.code === 'EAUTH') return 'temporary'
  return typeof e.responseCode === 'number' && e.responseCode >= 500 && e.responseCode < 600 ? 'permanent' : 'temporary'
}

export function describeError (err: unknown): string {
  const e = (err ?? {}) as SendError
  const text = e.response ?? e.message ?? String(err)
  const code = e.responseCode ?? e.code
  return (code !== undefined ? `${code} ${text}` : text).replace(/\s+/g, ' ').slice(0, 1000)
}

const CLAIM = `
  with picked as (
    select id, status as was from mail_messages
    where status in ('queued', 'sending') and next_attempt_at <= $1
    order by next_attempt_at, id
    limit $2
    for update skip locked
  )
  update mail_messages m
  set status = 'sending', claim_token = $3, claimed_until = $4, next_attempt_at = $4, attempts = m.attempts + 1
  from picked where m.id = picked.id
  returning m.id, m.message_id, m.kind, m.recipient, m.payload, m.attempts, m.created_at, picked.was = 'sending' as reclaimed`

export class Sender {
  readonly #o: Required<Omit<SenderOptions, 'replyTo' | 'events'>> & Pick<SenderOptions, 'replyTo' | 'events'>
  #stopped = true
  #running: Promise<void> | undefined
  #wake: (() => void) | undefined
  #downSince: number | undefined
  /** Rounds in a row in which nothing got through because the server could not be reached. */
  #downRounds = 0
  #unreachableInRound = false
  #lastCleanup = 0
  #lastError: string | undefined
  /** Claims' tokens; those whose commit went unseen are given back at the next claim (common/claim-tokens.ts). */
  readonly #claims = new ClaimTokens((tokens) => this.#write(
    `update mail_messages set status = 'queued', next_attempt_at = $2, claimed_until = null, claim_token = null
     where claim_token = any($1::text[])`, [tokens, new Date(this.#o.now())]))
  /** 'sent' marks, gathered (see the top of this file); each resolves to whether its row still carried the claim's token. */
  readonly #sentMarks: GroupCommit<{ id: string, token: string, at: Date }, boolean>

  constructor (options: SenderOptions) {
    this.#o = {
      now: Date.now,
      random: Math.random,
      sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
      ...options
    }
    this.#sentMarks = new GroupCommit({
      run: async (marks) => {
        const res = await this.#write(
          `update mail_messages m set status = 'sent', sent_at = u.at, next_attempt_at = u.at, claimed_until = null, claim_token = null, last_error = null
           from unnest($1::bigint[], $2::text[], $3::timestamptz[]) as u(id, token, at)
           where m.id = u.id and m.claim_token = u.token
           returning m.id`, [marks.map((k) => k.id), marks.map((k) => k.token), marks.map((k) => k.at)])
        const marked = new Set(res.rows.map((r: { id: string }) => String(r.id)))
        return marks.map((k) => marked.has(k.id))
      },
      maxBatch: 500,
      maxWaitMs: 0,
      concurrency: 1,
      // A failed mark is the database's failure, not one message's: every mark of the batch fails (their rows stay 'sending' and are resent after the lease).
      isolate: () => false
    })
  }

  /** The SMTP server failed every attempt since this time (undefined while it answers). */
  get unreachableSince (): number | undefined { return this.#downSince }
  get lastError (): string | undefined { return this.#lastError }

  /** Back-off before attempt `attempts + 1`: doubling from the base, capped, with jitter (half fixed, half random). */
  backoff (attempts: number): number {
    const exp = Math.min(this.#o.retryMaxMs, this.#o.retryBaseMs * 2 ** Math.min(30, Math.max(0, attempts - 1)))
    return Math.round(exp / 2 + this.#o.random() * exp / 2)
  }

  /** Claims due messages within the quota; `waitMs` says when to look again if none. */
  async claim (): Promise<{ messages: ClaimedMessage[], waitMs: number }> {
    const claimed = await this.#claims.claim((token) => this.#transaction(async (client) => {
      const now = this.#o.now()
      const { rows: [rate] } = await client.query<{ next_slot_at: Date, hour_start: Date, hour_counts: number[] }>(
        'select next_slot_at, hour_start, hour_counts from mail_rate where id = 1 for update')
      const g = grant({ nextSlotAt: rate.next_slot_at.getTime(), hourStart: rate.hour_start.getTime(), hourCounts: rate.hour_counts }, this.#o.limits, now, this.#o.batchMax)
      if (g.granted === 0) {
        // Nothing written: the commit only releases the quota row.
        return { messages: [], waitMs: g.waitMs }
      }
      // The lease runs from the last slot of this claim: every row gets its whole lease to be sent.
      const leaseEnd = new Date(g.start + g.granted * g.intervalMs + this.#o.leaseMs)
      const { rows } = await client.query<{ id: string, message_id: string, kind: string, recipient: string, payload: unknown, attempts: number, created_at: Date, reclaimed: boolean }>(
        CLAIM, [new Date(now), g.granted, token, leaseEnd])
      if (rows.length === 0) {
        return { messages: [], waitMs: this.#o.pollMs }
      }
      const next = consume(g, rows.length)
      await client.query('update mail_rate set next_slot_at = $1, hour_start = $2, hour_counts = $3 where id = 1',
        [new Date(next.nextSlotAt), new Date(next.hourStart), next.hourCounts])
      // Oldest due first, each in its own slot.
      rows.sort((a, b) => Number(BigInt(a.id) - BigInt(b.id)))
      const messages = rows.map((r, i): ClaimedMessage => ({
        id: r.id, messageId: r.message_id, kind: r.kind, recipient: r.recipient, payload: r.payload, attempts: r.attempts,
        createdAt: r.created_at, reclaimed: r.reclaimed, slotAt: g.start + i * g.intervalMs, token
      }))
      return { messages, waitMs: 0 }
    }))
    // Counted once the claim has committed.
    const reclaimed = claimed.messages.filter((m) => m.reclaimed).length
    if (reclaimed > 0) this.#o.events?.reclaimed?.(reclaimed)
    return claimed
  }

  /** Sends one claimed message and records the outcome. */
  async deliver (m: ClaimedMessage): Promise<Outcome> {
    const token = m.token
    let error: unknown
    try {
      const rendered = renderMessage(m.kind, m.payload, this.#o.links)
      await this.#o.transport.send({
        messageId: m.messageId, from: this.#o.from, replyTo: this.#o.replyTo, to: m.recipient,
        subject: rendered.subject, text: rendered.text, html: rendered.html, date: m.createdAt
      })
    } catch (err) {
      error = err
    }
    const now = this.#o.now()
    if (error === undefined) {
      this.#downSince = undefined
      const mark = { id: m.id, token, at: new Date(now) }
      if (!await this.#throughFailover(() => this.#sentMarks.submit(mark))) { this.#o.events?.lost?.(m); return 'lost' }
      this.#o.events?.sent?.(m)
      return 'sent'
    }
    const text = describeError(error)
    this.#lastError = text
    if (UNREACHABLE.has(String((error as SendError).code))) {
      this.#downSince ??= now
      this.#unreachableInRound = true
    }
    const givenUp = this.#o.giveUpAfterMs > 0 && now - m.createdAt.getTime() >= this.#o.giveUpAfterMs
    if (classify(error) === 'permanent' || givenUp) {
      const reason = givenUp && classify(error) !== 'permanent' ? `gave up after ${m.attempts} attempts: ${text}` : text
      const res = await this.#throughFailover(() => this.#write(
        `update mail_messages set status = 'failed', last_error = $3, claimed_until = null, claim_token = null
         where id = $1 and claim_token = $2`, [m.id, token, reason]))
      if (res.rowCount === 0) { this.#o.events?.lost?.(m); return 'lost' }
      this.#o.events?.failed?.(m, reason)
      return 'failed'
    }
    const delay = this.backoff(m.attempts)
    const res = await this.#throughFailover(() => this.#write(
      `update mail_messages set status = 'queued', next_attempt_at = $3, last_error = $4, claimed_until = null, claim_token = null
       where id = $1 and claim_token = $2`, [m.id, token, new Date(now + delay), text]))
    if (res.rowCount === 0) { this.#o.events?.lost?.(m); return 'lost' }
    this.#o.events?.retry?.(m, text, delay)
    return 'retry'
  }

  /** One claim and its sends, each at its slot, at most `concurrency` in flight. */
  async runOnce (): Promise<Round> {
    const { messages, waitMs } = await this.claim()
    const round: Round = { claimed: messages.length, sent: 0, retried: 0, failed: 0, waitMs: messages.length ? 0 : waitMs }
    const inFlight = new Set<Promise<void>>()
    for (const m of messages) {
      while (inFlight.size >= this.#o.concurrency) await Promise.race(inFlight)
      const wait = m.slotAt - this.#o.now()
      if (wait > 0) await this.#o.sleep(wait)
      const p: Promise<void> = this.deliver(m).then((outcome) => {
        if (outcome === 'sent') round.sent++
        else if (outcome === 'retry') round.retried++
        else if (outcome === 'failed') round.failed++
      }, (err) => {
        // The database went away before the mark: the row stays 'sending' and is resent after its lease.
        this.#o.events?.error?.(err, 'recording a send')
      }).finally(() => { inFlight.delete(p) })
      inFlight.add(p)
    }
    await Promise.all(inFlight)
    return round
  }

  /** Deletes sent rows past their retention, a thousand at a time. */
  async cleanup (): Promise<number> {
    if (this.#o.retainSentMs <= 0) return 0
    const res = await this.#write(
      `delete from mail_messages where id in (
         select id from mail_messages where status = 'sent' and sent_at < $1 limit 1000)`, [new Date(this.#o.now() - this.#o.retainSentMs)])
    return res.rowCount ?? 0
  }

  /**
   * Records a send's outcome through a database failover: the mark is
   * idempotent (it holds only while the row carries this claim's token), so
   * it is simply written again, with back-off, for up to half the lease.
   * Given up, the row stays 'sending' and is resent after its lease: a
   * second copy of a message the receiver already has.
   */
  async #throughFailover<T> (mark: () => Promise<T>): Promise<T> {
    const deadline = Date.now() + this.#o.leaseMs / 2
    for (let attempt = 0; ; attempt++) {
      try {
        return await mark()
      } catch (err) {
        const pause = Math.min(1000, 50 * 2 ** attempt)
        if (!isFailover(err) || Date.now() + pause >= deadline || this.#stopped) throw err
        await new Promise((resolve) => setTimeout(resolve, pause))
      }
    }
  }

  /**
   * One statement in a transaction of its own. The embedded database (PGlite,
   * one session multiplexed over many connections) keeps a transaction's
   * statements together, but two connections' parameterized statements
   * outside one can interleave and clobber each other's unnamed portal. A
   * mark costs two more round trips this way: nothing at mail rates.
   */
  async #write (text: string, values: unknown[]): Promise<pg.QueryResult> {
    return await this.#transaction((client) => client.query(text, values))
  }

  /** Runs `work` in a transaction on a pooled connection: committed, or rolled back on error; a dead connection is not returned to the pool. */
  async #transaction<T> (work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    const client = await this.#o.pool.connect()
    let broken: Error | undefined
    try {
      await client.query('begin')
      try {
        const result = await work(client)
        await client.query('commit')
        return result
      } catch (err) {
        await client.query('rollback').catch((e: Error) => { broken = e })
        throw err
      }
    } catch (err) {
      broken ??= isConnectionError(err) ? err as Error : undefined
      throw err
    } finally {
      client.release(broken)
    }
  }

  start (): void {
    if (!this.#stopped) return
    this.#stopped = false
    this.#running = this.#loop()
  }

  /** Stops claiming; waits for the sends in flight (at most `timeoutMs`: the rest is resent after its lease). */
  async stop (timeoutMs = 10_000): Promise<void> {
    this.#stopped = true
    this.#wake?.()
    let timer: NodeJS.Timeout | undefined
    await Promise.race([this.#running, new Promise((resolve) => { timer = setTimeout(resolve, timeoutMs) })])
    clearTimeout(timer)
  }

  async #loop (): Promise<void> {
    while (!this.#stopped) {
      let wait = 0
      try {
        this.#unreachableInRound = false
        const round = await this.runOnce()
        this.#downRounds = round.sent === 0 && this.#unreachableInRound ? this.#downRounds + 1 : 0
        if (round.claimed === 0) wait = Math.min(round.waitMs, this.#o.pollMs)
        // The server is unreachable: stop claiming for a while instead of cycling every message through it,
        // but look again at least every minute, so mail flows soon after it is back.
        else if (this.#downRounds > 0) wait = Math.min(this.backoff(this.#downRounds), 60_000)
        if (this.#o.now() - this.#lastCleanup > 600_000) {
          this.#lastCleanup = this.#o.now()
          await this.cleanup()
        }
      } catch (err) {
        this.#o.events?.error?.(err, 'claiming messages')
        wait = this.#o.pollMs
      }
      if (wait > 0 && !this.#stopped) await this.#idle(wait)
    }
  }

  #idle (ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms)
      function done () { clearTimeout(timer); resolve() }
      this.#wake = () => { this.#wake = undefined; done() }
    })
  }
}
