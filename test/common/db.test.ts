import t from 'tap'
import { sql } from 'kysely'
import { eachDatabase, openDatabase } from '../helpers/database.js'
import { ping } from '../../common/db.js'

eachDatabase(t, 'a read-only pool cannot write, a read-write pool can', async (t, database) => {
  const rw = openDatabase(t, database)
  const ro = openDatabase(t, database, { readOnly: true })
  t.ok(await ping(ro))
  const before = await ro.db.selectFrom('counters').select('value').where('name', '=', 'participants').executeTakeFirstOrThrow()
  await t.rejects(ro.db.updateTable('counters').set({ value: 1 }).where('name', '=', 'participants').execute(), /read-only/)
  await t.rejects(ro.db.transaction().execute(async (trx) => {
    await trx.insertInto('counters').values({ name: 'x', value: 1 }).execute()
  }), /read-only/)
  // The read-only pool on the shared PGlite session must not leak into the writer's connections.
  await rw.db.insertInto('counters').values({ name: 'written', value: 7 }).execute()
  const row = await ro.db.selectFrom('counters').select('value').where('name', '=', 'written').executeTakeFirstOrThrow()
  t.equal(Number(row.value), 7)
  const after = await ro.db.selectFrom('counters').select('value').where('name', '=', 'participants').executeTakeFirstOrThrow()
  t.equal(after.value, before.value)
})

eachDatabase(t, 'migrations are idempotent and the seed is deterministic', async (t, database) => {
  const rw = openDatabase(t, database)
  const { migrateToLatest } = await import('../../migrations/migrator.js')
  const again = await migrateToLatest(rw.db)
  t.same(again.results, [], 'nothing left to apply')
  const tables = await sql<{ n: string }>`select count(*) as n from information_schema.tables where table_schema = 'public' and table_name in ('tutorials','news','comments','events','completions','counters','idempotency_keys','outbox')`.execute(rw.db)
  t.equal(Number(tables.rows[0].n), 8)
  const first = await rw.db.selectFrom('tutorials').select(['slug', 'title']).orderBy('id').limit(3).execute()
  t.equal(first.length, 3)
  t.match(first[0].slug, /^[a-z0-9-]+$/)
  const countries = await rw.db.selectFrom('events').select(sql<number>`count(distinct country)`.as('n')).executeTakeFirstOrThrow()
  t.ok(Number(countries.n) > 5, 'events across many countries')
})

t.test('ping fails fast when nothing listens', async (t) => {
  const { createDatabase } = await import('../../common/db.js')
  const handle = createDatabase({ url: 'postgres://postgres@127.0.0.1:1/none', connectTimeoutMs: 300 })
  t.teardown(handle.close)
  t.equal(await ping(handle, 1000), false)
})

eachDatabase(t, 'sharded counters add up', async (t, database) => {
  const { bumpCounter, readCounter, counterShard } = await import('../../common/counters.js')
  const rw = openDatabase(t, database)
  const base = await readCounter(rw.db, 'participants')
  await Promise.all(Array.from({ length: 40 }, (_, i) => bumpCounter(rw.db, 'participants', 2, i % 5)))
  t.equal(await readCounter(rw.db, 'participants'), base + 80)
  const shard = await rw.db.selectFrom('counters').select('value').where('name', '=', counterShard('participants', 3)).executeTakeFirstOrThrow()
  t.equal(Number(shard.value), 16, 'each shard holds its part')
  t.equal(await readCounter(rw.db, 'nothing-here'), 0)
}, { seed: { tutorials: 1, news: 1, comments: 0, events: 0, completions: 0 } })
