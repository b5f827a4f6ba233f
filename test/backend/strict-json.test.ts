/**
 * The write API's JSON parser (backend/strict-json.ts): the same values as
 * JSON.parse for every body it accepts, and a named field for everything it
 * refuses. Both entry points are checked: the fast one and the full parser.
 */
import t from 'tap'
import { JsonBodyError, parseJsonBody, parseStrictJson } from '../../backend/strict-json.js'

/** A small deterministic generator (mulberry32), so a failure is reproducible. */
function rng (seed: number) {
  return () => {
    seed |= 0; seed = seed + 0x6d2b79f5 | 0
    let r = Math.imul(seed ^ seed >>> 15, 1 | seed)
    r = r + Math.imul(r ^ r >>> 7, 61 | r) ^ r
    return ((r ^ r >>> 14) >>> 0) / 4294967296
  }
}

const ALPHABET = ['a', 'Z', ' ', '"', '\\', '/', '\n', '\t', 'é', '€', '🎉', ':', ',', '{', '}', '[', ']', 'constructor', 'proto', '\u2028']

function randomValue (next: () => number, depth: number): unknown {
  const pick = next()
  if (depth > 3 || pick < 0.35) {
    const kind = Math.floor(next() * 5)
    if (kind === 0) return Math.floor(next() * 2e6) / 100 - 1e4
    if (kind === 1) return next() < 0.5
    if (kind === 2) return null
    return Array.from({ length: Math.floor(next() * 8) }, () => ALPHABET[Math.floor(next() * ALPHABET.length)]).join('')
  }
  if (pick < 0.6) return Array.from({ length: Math.floor(next() * 4) }, () => randomValue(next, depth + 1))
  const obj: Record<string, unknown> = {}
  for (let i = Math.floor(next() * 5); i > 0; i--) obj[`k${Math.floor(next() * 50)}${ALPHABET[Math.floor(next() * 12)]}`] = randomValue(next, depth + 1)
  return obj
}

t.test('accepts what JSON.parse accepts, with the same value', async (t) => {
  const next = rng(14)
  const mismatches: string[] = []
  let withEscapes = 0
  for (let i = 0; i < 2000; i++) {
    const value = randomValue(next, 0)
    const text = JSON.stringify(value, null, i % 3 === 0 ? 2 : undefined)
    if (text.includes('\\')) withEscapes++
    const expected = JSON.stringify(JSON.parse(text))
    if (JSON.stringify(parseStrictJson(text)) !== expected) mismatches.push(`strict: ${text}`)
    if (JSON.stringify(parseJsonBody(text)) !== expected) mismatches.push(`body: ${text}`)
  }
  t.same(mismatches, [], 'every generated body parses to what JSON.parse gives')
  t.ok(withEscapes > 200 && withEscapes < 1800, `both paths of parseJsonBody were taken (${withEscapes} of 2000 had escapes)`)
  // Escapes of every kind, numbers in every form.
  const text = '{"s":"\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\ud83c\\udf89","n":[0,-0,1.5,-2e3,3E-2,1e+2]}'
  t.same(parseStrictJson(text), JSON.parse(text))
  t.same(parseJsonBody(' \n\t' + text + ' \r\n'), JSON.parse(text))
})

t.test('refuses what JSON.parse refuses', async (t) => {
  for (const text of ['', '{', '{"a"}', '{"a":}', '{"a":1,}', '[1,]', '{a:1}', "{'a':1}", '{"a":01}', '{"a":.5}', '{"a":1.}', '{"a":+1}',
    '{"a":"\\x"}', '{"a":"\\u12"}', '{"a":"\u0001"}', '{"a":tru}', '{"a":1} {}', 'nul', '"abc', '{"a":NaN}', '{"a":Infinity}']) {
    t.throws(() => JSON.parse(text), `JSON.parse refuses ${JSON.stringify(text)}`)
    for (const parse of [parseStrictJson, parseJsonBody]) {
      try {
        parse(text)
        t.fail(`accepted ${JSON.stringify(text)}`)
      } catch (err) {
        t.ok(err instanceof JsonBodyError, `${JSON.stringify(text)}: ${(err as Error).message}`)
        t.equal((err as JsonBodyError).field, undefined, 'a syntax error names no field')
      }
    }
  }
})

t.test('names the field of a repeated key, a forbidden character or prototype poisoning', async (t) => {
  const cases: Array<[string, string | undefined, RegExp]> = [
    ['{"a":1,"a":1}', 'a', /^a appears more than once$/],
    ['{"a":{"b":1,"c":2,"b":3}}', 'a.b', /^a\.b appears more than once$/],
    ['{"list":[{"x":1},{"x":1,"x":2}]}', 'list.1.x', /more than once/],
    ['{"a":"\\u0000"}', 'a', /^a must not contain NUL/],
    ['{"a":["ok","\\u009f"]}', 'a.1', /C1 control/],
    ['{"a":"x\u0080"}', 'a', /C1 control/],
    ['{"a":"\\ud800x"}', 'a', /lone surrogate/],
    ['{"a":"\\udfff"}', 'a', /lone surrogate/],
    ['{"a\\u0000":1}', undefined, /a field name in the request body must not contain NUL/],
    ['{"o":{"\\ud800":1}}', 'o', /a field name in o must not contain lone surrogates/],
    ['{"__proto__":{"admin":true}}', '__proto__', /__proto__/],
    ['{"a":{"\\u005f_proto__":1}}', 'a.__proto__', /__proto__/],
    ['{"constructor":{"prototype":{"admin":true}}}', 'constructor', /constructor\.prototype/],
    ['"\\u0000"', undefined, /^request body must not contain NUL/]
  ]
  for (const [text, field, message] of cases) {
    for (const parse of [parseStrictJson, parseJsonBody]) {
      try {
        parse(text)
        t.fail(`accepted ${text}`)
      } catch (err) {
        t.ok(err instanceof JsonBodyError, text)
        t.equal((err as JsonBodyError).field, field, text)
        t.match((err as Error).message, message, text)
      }
    }
  }
  // A key named constructor without a prototype inside is just a key.
  t.same(parseJsonBody('{"constructor":"Ada"}'), { constructor: 'Ada' })
  t.same(parseJsonBody('{"a":"\\ud83c\\udf89"}'), { a: '🎉' })
})

t.test('nesting is bounded', async (t) => {
  t.same(parseStrictJson('['.repeat(32) + ']'.repeat(32)), JSON.parse('['.repeat(32) + ']'.repeat(32)))
  t.throws(() => parseStrictJson('['.repeat(33) + ']'.repeat(33)), /nested too deeply/)
  t.throws(() => parseJsonBody('{"a":'.repeat(5000) + '1' + '}'.repeat(5000)), /nested too deeply/)
})
