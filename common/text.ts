/**
 * Characters that no stored text may carry, whatever the field (design §2.8),
 * checked by the backend's JSON parser and the frontend's form parser alike:
 * - U+0000: PostgreSQL `text` cannot hold it (the insert would fail as a 500);
 * - C1 controls U+0080–U+009F: never typed by a person, they are what
 *   mis-decoded Latin-1/Windows-1252 bytes look like, and some terminals and
 *   log viewers act on them;
 * - lone surrogates: not Unicode scalar values, so the text cannot be encoded
 *   as UTF-8 on the way out (a JSON `\ud800` escape is the only way in).
 * Other C0 controls are a per-field question (a comment keeps its newlines):
 * the request schemas decide those.
 */

/** ES2024, in Node since 20; the project's `lib` is ES2023. */
interface WellFormedCheck { isWellFormed (): boolean }

const FORBIDDEN = /[\u0000\u0080-\u009f]/

/** What is wrong with `value`, phrased to follow a field name; undefined when nothing is. */
export function textProblem (value: string): string | undefined {
  const m = FORBIDDEN.exec(value)
  if (m !== null) return m[0] === '\u0000' ? 'must not contain NUL characters' : 'must not contain C1 control characters (U+0080 to U+009F)'
  // A surrogate in a pair is fine (emoji); only a lone one is not Unicode.
  if (!(value as unknown as WellFormedCheck).isWellFormed()) return 'must not contain lone surrogates (it is not well-formed Unicode)'
  return undefined
}
