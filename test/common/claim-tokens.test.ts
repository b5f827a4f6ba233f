/**
 * ClaimTokens (common/claim-tokens.ts): a claim lost with its connection is
 * given back before the next one; one the database refused is not; a give-back
 * that fails is tried again at the claim after.
 */
import t from 'tap'
import { ClaimTokens } from '../../common/claim-tokens.js'

t.test('a claim whose outcome went unseen is given back at the next claim, once', async (t) => {
  const givenBack: string[][] = []
  let failGiveBack = false
  const claims = new ClaimTokens(async (tokens) => {
    if (failGiveBack) throw new Error('Connection terminated unexpectedly')
    givenBack.push(tokens)
  })
  let lost = ''
  await t.rejects(claims.claim(async (token) => { lost = token; throw new Error('Connection terminated unexpectedly') }))
  t.match(lost, /^[A-Za-z0-9_-]{16}$/, 'a fresh token per claim')
  failGiveBack = true
  let ran = false
  await t.rejects(claims.claim(async () => { ran = true }), /Connection terminated/)
  t.notOk(ran, 'the give-back failed: the claim is not run')
  failGiveBack = false
  await t.rejects(claims.claim(async () => { throw Object.assign(new Error('duplicate key'), { code: '23505' }) }), /duplicate key/)
  t.same(givenBack, [[lost]], 'the lost claim is given back before the next one')
  let next = ''
  t.equal(await claims.claim(async (token) => { next = token; return 'claimed' }), 'claimed')
  t.not(next, lost)
  t.same(givenBack, [[lost]], 'once; and the refused claim, which rolled back, is not given back')
})
