/**
 * The embedded database serves many wire connections from one PGlite
 * session (common/embedded-db.ts): each connection's extended-protocol
 * sequences and transactions must reach the session whole, never
 * interleaved with another connection's.
 */
import t from 'tap'
import pg from 'pg'
import { startEmbeddedDatabase } from '../../common/embedded-db.js'

t.test('parameterized statements of many connections at once each get their own answer', async (t) => {
  const embedded = await startEmbeddedDatabase({ dataDir: 'memory://' })
  t.teardown(embedded.close)
  const clients = await Promise.all(Array.from({ length: 12 }, async () => {
    const c = new pg.Client({ connectionString: embedded.url })
    await c.connect()
    return c
  }))
  t.teardown(async () => { await Promise.all(clients.map((c) => c.end())) })
  await clients[0].query('create table seen (client int, n int)')

  const wrong: string[] = []
  const errors: string[] = []
  // Each connection pipelines its statements (pg sends Parse/Bind/Describe/Execute/Sync for each at once),
  // mixing unnamed and named statements, reads and writes outside any transaction, plus a transaction of its own.
  await Promise.all(clients.map(async (c, id) => {
    const sent: Array<Promise<void>> = []
    for (let n = 0; n < 40; n++) {
      const value = id * 1000 + n
      // A statement text of its own per connection: one that ran another's unnamed statement or portal shows it.
      sent.push(c.query(`select $1::int as v, $2::text as who, ${id} as id`, [value, `client ${id}`]).then((r) => {
        if (r.rows[0].v !== value || r.rows[0].who !== `client ${id}` || r.rows[0].id !== id) wrong.push(`${id}/${n}: ${JSON.stringify(r.rows[0])}`)
      }, (err: Error) => { errors.push(err.message) }))
      // Named per connection: prepared statements live in the one session, whose names all connections share.
      sent.push(c.query({ name: `note-${id}`, text: 'insert into seen (client, n) values ($1, $2) returning client', values: [id, n] }).then((r) => {
        if (r.rows[0].client !== id) wrong.push(`${id}/${n} insert: ${JSON.stringify(r.rows[0])}`)
      }, (err: Error) => { errors.push(err.message) }))
    }
    await Promise.all(sent)
    await c.query('begin')
    await c.query('insert into seen (client, n) values ($1, $2)', [id, -1])
    const mine = await c.query<{ n: string }>('select count(*) as n from seen where client = $1', [id])
    if (Number(mine.rows[0].n) !== 41) wrong.push(`${id}: ${mine.rows[0].n} rows inside its transaction`)
    await c.query('commit')
  }))
  t.same(errors, [], 'no statement failed (no "portal does not exist")')
  t.same(wrong, [], 'every answer belongs to the statement that asked')
  const total = await clients[0].query<{ n: string }>('select count(*) as n from seen')
  t.equal(Number(total.rows[0].n), 12 * 41, 'every insert stored once')
})

t.test('a connection that goes away in the middle of a transaction gives the session back', async (t) => {
  const embedded = await startEmbeddedDatabase({ dataDir: 'memory://' })
  t.teardown(embedded.close)
  const quitter = new pg.Client({ connectionString: embedded.url })
  quitter.on('error', () => {})
  await quitter.connect()
  await quitter.query('create table x (n int)')
  await quitter.query('begin')
  await quitter.query('insert into x values ($1)', [1])
  // Gone without COMMIT or ROLLBACK: its socket closes.
  ;(quitter as unknown as { connection: { stream: { destroy: () => void } } }).connection.stream.destroy()
  const other = new pg.Client({ connectionString: embedded.url })
  await other.connect()
  t.teardown(() => other.end())
  const r = await Promise.race([
    other.query<{ n: string }>('select count(*) as n from x'),
    new Promise<never>((_resolve, reject) => setTimeout(() => reject(new Error('the session stayed taken')), 10_000))
  ])
  t.equal(Number(r.rows[0].n), 0, 'the other connection is served, and the unfinished insert was rolled back')
})
