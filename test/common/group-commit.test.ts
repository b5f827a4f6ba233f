/**
 * Group commit (issue 14): writes that arrive together share one
 * transaction, one bad write never fails its neighbours, and idempotency
 * holds inside a batch and across batches.
 */
import t from 'tap'
import { sql } from 'kysely'
import { GroupCommit } from '../../common/group-commit.js'
import { eachDatabase } from '../helpers/database.js'
import { startBackend, eventually } from '../helpers/backend.js'
import { startTcpProxy } from '../helpers/tcp-proxy.js'
import { scraper } from '../helpers/metrics.js'

/** A `run` that records its batches and fails the whole batch when it holds a `bad` item. */
function recorder (fail: (items: string[]) => unknown = (items) => items.includes('bad') ? Object.assign(new Error('check violation'), { code: '23514' }) : undefined) {
  const batches: string[][] = []
  let release: (() => void) | undefined
  return {
    batches,
    /** While held, transactions do not finish (they are "in flight"). */
    hold () { let open!: () => void; const gate = new Promise<void>((resolve) => { open = resolve }); release = open; return gate },
    release: () => release?.(),
    gate: undefined as Promise<void> | undefined,
    async run (items: string[]): Promise<string[]> {
      batches.push(items)
      if (this.gate) await this.gate
      const err = fail(items)
      if (err) throw err
      return items.map((i) => `done:${i}`)
    }
  }
}

t.test('writes submitted together go in one batch; a full batch leaves at once', async (t) => {
  const r = recorder()
  const gc = new GroupCommit<string, string>({ run: (items) => r.run(items), maxBatch: 4, maxWaitMs: 0, concurrency: 1, isolate: () => true })
  const results = await Promise.all(['a', 'b', 'c', 'd', 'e', 'f'].map((x) => gc.submit(x)))
  t.same(results, ['done:a', 'done:b', 'done:c', 'done:d', 'done:e', 'done:f'])
  t.same(r.batches, [['a', 'b', 'c', 'd'], ['e', 'f']], 'four (the most), then the rest')
  t.equal(gc.pending, 0)
})

t.test('while every slot is busy, writes gather into the next batch', async (t) => {
  const r = recorder()
  r.gate = r.hold()
  const gc = new GroupCommit<string, string>({ run: (items) => r.run(items), maxBatch: 100, maxWaitMs: 0, concurrency: 1, isolate: () => true })
  const first = gc.submit('a')
  await new Promise((resolve) => setImmediate(resolve))
  t.same(r.batches, [['a']], 'a lone write leaves at the end of its turn, without waiting for company')
  const later = ['b', 'c', 'd'].map((x) => gc.submit(x))
  await new Promise((resolve) => setTimeout(resolve, 20))
  t.equal(r.batches.length, 1, 'nothing leaves while the only slot is busy')
  t.equal(gc.pending, 4)
  r.gate = undefined
  r.release()
  t.same(await Promise.all([first, ...later]), ['done:a', 'done:b', 'done:c', 'done:d'])
  t.same(r.batches, [['a'], ['b', 'c', 'd']], 'what arrived meanwhile is one batch')
  await gc.drain()
})

t.test('maxWaitMs gathers writes that arrive a little apart', async (t) => {
  const r = recorder()
  const gc = new GroupCommit<string, string>({ run: (items) => r.run(items), maxBatch: 100, maxWaitMs: 30, concurrency: 2, isolate: () => true })
  const a = gc.submit('a')
  await new Promise((resolve) => setImmediate(resolve))
  const b = gc.submit('b')
  t.same(await Promise.all([a, b]), ['done:a', 'done:b'])
  t.same(r.batches, [['a', 'b']])
})

t.test('one bad write fails alone: the batch is split until the offender is by itself', async (t) => {
  const r = recorder()
  const splits: number[] = []
  const gc = new GroupCommit<string, string>({ run: (items) => r.run(items), maxBatch: 100, maxWaitMs: 0, concurrency: 1, isolate: () => true, onSplit: (n) => splits.push(n) })
  const names = ['a', 'b', 'c', 'bad', 'e', 'f', 'g']
  const settled = await Promise.allSettled(names.map((x) => gc.submit(x)))
  t.same(settled.map((s) => s.status), ['fulfilled', 'fulfilled', 'fulfilled', 'rejected', 'fulfilled', 'fulfilled', 'fulfilled'])
  t.match((settled[3] as PromiseRejectedResult).reason, { code: '23514' })
  t.same(splits, [7, 4, 2], 'halving: 7 → 3 + 4 → 2 + 2 → 1 + 1')
  t.ok(r.batches.some((b) => b.length === 1 && b[0] === 'bad'), 'the offender ran alone')
  t.ok(r.batches.filter((b) => b.includes('e')).length <= Math.ceil(Math.log2(7)) + 1, 'a neighbour ran at most ⌈log2 n⌉ + 1 times')
})

t.test('a lost database fails the whole batch at once; a deadlock is retried', async (t) => {
  const lost = recorder(() => Object.assign(new Error('Connection terminated'), { code: 'ECONNRESET' }))
  const gc = new GroupCommit<string, string>({ run: (items) => lost.run(items), maxBatch: 100, maxWaitMs: 0, concurrency: 1, isolate: (err) => (err as { code: string }).code !== 'ECONNRESET' })
  const settled = await Promise.allSettled(['a', 'b', 'c'].map((x) => gc.submit(x)))
  t.same(settled.map((s) => s.status), ['rejected', 'rejected', 'rejected'])
  t.equal(lost.batches.length, 1, 'no splitting when the database is away')

  let deadlocks = 2
  const flaky = recorder(() => deadlocks-- > 0 ? Object.assign(new Error('deadlock detected'), { code: '40P01' }) : undefined)
  const gc2 = new GroupCommit<string, string>({ run: (items) => flaky.run(items), maxBatch: 100, maxWaitMs: 0, concurrency: 1, isolate: () => false, retry: (err) => (err as { code: string }).code === '40P01' })
  t.same(await Promise.all(['a', 'b'].map((x) => gc2.submit(x))), ['done:a', 'done:b'])
  t.same(flaky.batches, [['a', 'b'], ['a', 'b'], ['a', 'b']], 'the same batch, run again')
})

t.test('options are checked when the group commit is made', async (t) => {
  const run = async (items: string[]) => items
  t.throws(() => new GroupCommit({ run, maxBatch: 0, maxWaitMs: 0, concurrency: 1, isolate: () => true }), /maxBatch/)
  t.throws(() => new GroupCommit({ run, maxBatch: 1, maxWaitMs: 0, concurrency: 0, isolate: () => true }), /concurrency/)
  t.throws(() => new GroupCommit({ run, maxBatch: 1, maxWaitMs: -1, concurrency: 1, isolate: () => true }), /maxWaitMs/)
})

eachDatabase(t, 'group commit through the API', async (t, database) => {
  // One transaction slot, and a database that can be made to hang: while a
  // first write holds the slot, the writes sent next surely gather into one
  // batch, however slowly they arrive.
  const proxy = await startTcpProxy(Number(new URL(database.url).port))
  t.teardown(proxy.close)
  const be = await startBackend(t, proxy.url(database.url), { BACKEND_WRITE_CONCURRENCY: '1' })
  const db = be.database.db
  const article = await db.selectFrom('news').select(['id', 'slug']).orderBy('id').executeTakeFirstOrThrow()
  const rows = async (author: string) => (await db.selectFrom('comments').select('id').where('author', '=', author).execute()).length
  const outboxRows = async () => Number((await db.selectFrom('outbox').select(db.fn.countAll<string>().as('n')).executeTakeFirstOrThrow()).n)
  const metric = async (name: string) => Number(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\d+)`, 'm').exec(await (await fetch(`${be.url}/-/metrics`, { headers: scraper })).text())?.[1] ?? NaN)
  type Answer = Awaited<ReturnType<typeof be.post>>
  /** Sends `writes` while a first write holds the only slot; returns their answers once both batches committed. */
  async function together (writes: () => Array<Promise<Answer>>): Promise<Answer[]> {
    proxy.freeze()
    const plug = be.post('/v1/comments', { news: article.slug, author: 'Plug', body: 'holds the slot' })
    t.ok(await eventually(() => be.app.writer.pending === 1), 'the first write is in flight')
    const answers = writes()
    t.ok(await eventually(() => be.app.writer.pending === 1 + answers.length, 10_000), 'the others are waiting for the slot')
    proxy.thaw()
    t.equal((await plug).status, 201)
    return Promise.all(answers)
  }

  await t.test('20 writes sent together: one transaction, one outbox row', async (t) => {
    const batchesBefore = await metric('flashcrowd_write_batch_size_count')
    const outboxBefore = await outboxRows()
    const answers = await together(() => Array.from({ length: 20 }, (_, i) => be.post('/v1/comments', { news: article.slug, author: 'Together', body: `comment ${i}` }, i % 2 ? { 'idempotency-key': `together-${i}` } : {})))
    t.same(answers.map((a) => a.status), Array(20).fill(201))
    t.equal(new Set(answers.map((a) => a.json.id)).size, 20, 'twenty distinct comments')
    t.same(answers.map((a) => a.json.body), Array.from({ length: 20 }, (_, i) => `comment ${i}`), 'each answer is its own write\'s')
    t.equal(await rows('Together'), 20)
    t.equal(await metric('flashcrowd_write_batch_size_count') - batchesBefore, 2, 'one batch (after the plug\'s)')
    t.equal(await outboxRows() - outboxBefore, 2, 'one outbox row for the batch (and one for the plug)')
    t.equal(new Set(answers.map((a) => a.headers.get('x-commit-lsn'))).size, 1, 'one commit position for all')
  })

  await t.test('one bad write never fails its neighbours', async (t) => {
    // A constraint that validation does not know about, so only the database can refuse the write.
    await sql`alter table comments add constraint no_poison check (body <> 'poison')`.execute(db)
    t.teardown(() => sql`alter table comments drop constraint if exists no_poison`.execute(db).then(() => {}))
    const splitsBefore = await metric('flashcrowd_write_batch_splits_total')
    const answers = await together(() => Array.from({ length: 12 }, (_, i) => be.post('/v1/comments',
      { news: i === 5 ? article.slug : i === 9 ? 'no-such-article' : article.slug, author: 'Neighbour', body: i === 5 ? 'poison' : `fine ${i}` },
      { 'idempotency-key': `neighbour-${i}` })))
    t.same(answers.map((a) => a.status), [201, 201, 201, 201, 201, 400, 201, 201, 201, 404, 201, 201], 'only the offenders fail, each with its own 4xx')
    t.equal(answers[5].json.error, 'validation')
    t.equal(await rows('Neighbour'), 10, 'the ten good ones are stored')
    t.ok(await metric('flashcrowd_write_batch_splits_total') > splitsBefore, 'they met the bad one in one batch, which was split')
    const claims = await db.selectFrom('idempotency_keys').select('key').where('key', 'in', ['neighbour-5', 'neighbour-9']).execute()
    t.same(claims, [], 'the failed writes did not burn their keys')
    const retried = await be.post('/v1/comments', { news: article.slug, author: 'Neighbour', body: 'poison' }, { 'idempotency-key': 'neighbour-5' })
    t.equal(retried.status, 400, 'the same request fails the same way again, not as a replay')
  })

  await t.test('inside one batch: 50 duplicates make one row; a different body with the same key is 409', async (t) => {
    const body = { news: article.slug, author: 'Folded', body: 'fifty times' }
    const answers = await together(() => [
      ...Array.from({ length: 50 }, () => be.post('/v1/comments', body, { 'idempotency-key': 'folded' })),
      be.post('/v1/comments', { ...body, body: 'something else' }, { 'idempotency-key': 'folded' })
    ])
    t.same(answers.slice(0, 50).map((a) => a.status), Array(50).fill(201))
    t.equal(answers[50].status, 409)
    t.equal(answers.filter((a) => a.headers.get('idempotent-replayed') === 'true').length, 49, 'one wrote, 49 replayed')
    t.equal(new Set(answers.slice(0, 50).map((a) => JSON.stringify(a.json))).size, 1, 'all got the same answer')
    t.equal(await rows('Folded'), 1)
    const replay = await be.post('/v1/comments', body, { 'idempotency-key': 'folded' })
    t.equal(replay.headers.get('idempotent-replayed'), 'true')
    t.same(replay.json, answers[0].json)
  })
})

eachDatabase(t, 'duplicates spread over concurrent batches still make one row', async (t, database) => {
  // Several transactions in flight and no gathering: the duplicates meet in the database, not in memory.
  const be = await startBackend(t, database.url, { BACKEND_WRITE_CONCURRENCY: '4', BACKEND_WRITE_BATCH_MAX: '3', BACKEND_WRITE_BATCH_WAIT_MS: '0' })
  const article = await be.database.db.selectFrom('news').select(['slug']).orderBy('id').executeTakeFirstOrThrow()
  for (let round = 0; round < 3; round++) {
    const body = { news: article.slug, author: `Spread ${round}`, body: 'once' }
    const answers = await Promise.all(Array.from({ length: 30 }, () => be.post('/v1/comments', body, { 'idempotency-key': `spread-${round}` })))
    t.same(answers.map((a) => a.status), Array(30).fill(201), `round ${round}`)
    t.equal(answers.filter((a) => a.headers.get('idempotent-replayed') !== 'true').length, 1, 'exactly one did the write')
    t.equal(new Set(answers.map((a) => a.json.id)).size, 1)
    t.equal((await be.database.db.selectFrom('comments').select('id').where('author', '=', `Spread ${round}`).execute()).length, 1)
  }
})
