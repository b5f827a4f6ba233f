import t from 'tap'
import { eachDatabase } from '../helpers/database.js'
import { startTcpProxy } from '../helpers/tcp-proxy.js'
import { createDatabase } from '../../common/db.js'
import { WalPosition } from '../../backend/wal.js'

eachDatabase(t, 'the WAL position survives a failed read and never holds a reply', async (t, database) => {
  const proxy = await startTcpProxy(Number(new URL(database.url).port))
  t.teardown(proxy.close)
  const handle = createDatabase({ url: proxy.url(database.url), max: 2, connectTimeoutMs: 300 })
  t.teardown(handle.close)
  const wal = new WalPosition({ timeoutMs: 200 })
  const first = await wal.read(handle.db)
  t.match(first, /^[0-9A-F]+\/[0-9A-F]+$/, 'a position')
  proxy.freeze()
  const started = Date.now()
  t.equal(await wal.read(handle.db), undefined, 'a hung server: no position')
  t.ok(Date.now() - started < 2000, 'answered by the deadline, not the server')
  proxy.thaw()
  let again: string | undefined
  for (let i = 0; i < 20 && !again; i++) again = await wal.read(handle.db)
  t.match(again, /^[0-9A-F]+\/[0-9A-F]+$/, 'positions come back after one failure')
}, { seed: false })
