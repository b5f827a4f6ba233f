import t from 'tap'
import { eachDatabase } from '../helpers/database.js'
import { startTcpProxy } from '../helpers/tcp-proxy.js'
import { createDatabase } from '../../common/db.js'
import { WalPosition } from '../../backend/wal.js'

eachDatabase(t, 'the WAL position survives a failed read and never holds a reply', async (t, database) => {
  const proxy = await startTcpProxy(Number(new URL(database.url).port))
  t.teardown(proxy.close)
  // A connect deadline a loaded machine meets (the embedded server shares this
  // process's CPU); the frozen read below is bounded by the WAL deadline anyway.
  const handle = createDatabase({ url: proxy.url(database.url), max: 2, connectTimeoutMs: 5000 })
  t.teardown(handle.close)
  const wal = new WalPosition({ timeoutMs: 500 })
  // Connected first, and read until one answers within the deadline: on a
  // loaded machine the embedded server's first answers can take longer.
  await handle.pool.query('select 1')
  let first: string | undefined
  for (let i = 0; i < 20 && !first; i++) first = await wal.read(handle.db)
  t.match(first, /^[0-9A-F]+\/[0-9A-F]+$/, 'a position')
  proxy.freeze()
  const started = Date.now()
  t.equal(await wal.read(handle.db), undefined, 'a hung server: no position')
  t.ok(Date.now() - started < 3000, 'answered by the deadline, not the server')
  proxy.thaw()
  let again: string | undefined
  for (let i = 0; i < 20 && !again; i++) again = await wal.read(handle.db)
  t.match(again, /^[0-9A-F]+\/[0-9A-F]+$/, 'positions come back after one failure')
}, { seed: false })

eachDatabase(t, 'COMMIT and the commit position in one round trip', async (t, database) => {
  const handle = createDatabase({ url: database.url, max: 2 })
  t.teardown(handle.close)
  await handle.pool.query('create table wal_probe (n int)')
  const before = (await handle.pool.query<{ lsn: string }>('select pg_current_wal_lsn()::text as lsn')).rows[0].lsn
  const client = await handle.pool.connect()
  try {
    await client.query('begin')
    await client.query('insert into wal_probe values (1)')
    const lsn = await new WalPosition().commit(client)
    t.match(lsn, /^[0-9A-F]+\/[0-9A-F]+$/, 'a position')
    const diff = await handle.pool.query<{ d: string }>('select pg_wal_lsn_diff($1::pg_lsn, $2::pg_lsn)::text as d', [lsn, before])
    t.ok(Number(diff.rows[0].d) > 0, 'past the position before the transaction')
    t.equal((await client.query('select count(*)::int as n from wal_probe')).rows[0].n, 1, 'the session is out of the transaction')
  } finally {
    client.release()
  }
  t.equal((await handle.pool.query('select count(*)::int as n from wal_probe')).rows[0].n, 1, 'committed, as another session sees')
  // A failed COMMIT (the transaction had failed) throws.
  const failing = await handle.pool.connect()
  try {
    await failing.query('begin')
    await failing.query('select 1/0').catch(() => {})
    await t.rejects(new WalPosition().commit(failing), { code: '40000' }, 'a COMMIT that rolled back is a failure, not a position')
  } finally {
    failing.release()
  }
}, { seed: false })
