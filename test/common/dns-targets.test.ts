import t from 'tap'
import { DnsTargets } from '../../common/dns-targets.js'

t.test('a name expands to one origin per address and follows scaling', async (t) => {
  let answer = ['10.0.0.2', '10.0.0.1']
  let fail = false
  const changes: string[][] = []
  const targets = new DnsTargets({
    urls: ['http://frontend:3000', 'http://127.0.0.1:4000', 'http://[::1]:4001'],
    lookup: async (host) => { if (fail) throw new Error('SERVFAIL'); t.equal(host, 'frontend'); return answer },
    onChange: (o) => changes.push(o)
  })
  t.same(targets.origins, ['http://frontend:3000', 'http://127.0.0.1:4000', 'http://[::1]:4001'], 'as given before the first lookup')
  t.same(await targets.refresh(), ['http://10.0.0.1:3000', 'http://10.0.0.2:3000', 'http://127.0.0.1:4000', 'http://[::1]:4001'])
  answer = ['10.0.0.1', '10.0.0.2', '10.0.0.3']
  t.equal((await targets.refresh()).length, 5, 'a new instance takes traffic without a restart')
  await targets.refresh()
  t.equal(changes.length, 2, 'onChange only on a change')
  fail = true
  t.equal((await targets.refresh()).length, 5, 'a failed lookup keeps the last good answer')
  answer = ['fd00::5']
  fail = false
  t.same((await targets.refresh())[0], 'http://[fd00::5]:3000')
})

t.test('the real resolver handles localhost-style names', async (t) => {
  const targets = new DnsTargets({ urls: ['http://localhost:3000'] })
  t.same(await targets.refresh(), ['http://localhost:3000'])
})
