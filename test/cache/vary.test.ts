import t from 'tap'
import { variantKey, normalizeVaryValue, varyHasStar, primaryKey } from '../../cache/vary.js'

t.test('keys', async (t) => {
  const p = primaryKey('example.com', '/a?b=1')
  t.equal(p, 'example.com/a?b=1')
  t.equal(variantKey(p, null, {}), p)
  t.equal(variantKey(p, ['accept-encoding', 'accept-language'], { 'accept-encoding': 'gzip, br', 'accept-language': 'fr ,  en' }), `${p}\naccept-encoding:br\naccept-language:fr,en`)
  t.equal(normalizeVaryValue('x', ['a', 'b']), 'a,b')
  t.ok(varyHasStar('*'))
  t.ok(varyHasStar('accept, *'))
  t.notOk(varyHasStar('accept'))
})

t.test('issue: no Accept-Encoding and `identity` select one variant (both are forwarded as identity)', async (t) => {
  const p = primaryKey('example.com', '/a')
  t.equal(variantKey(p, ['accept-encoding'], {}), variantKey(p, ['accept-encoding'], { 'accept-encoding': 'identity' }))
  t.equal(variantKey(p, ['accept-encoding'], {}), `${p}\naccept-encoding:identity`)
})
