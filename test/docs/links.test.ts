/**
 * The documentation holds together: the README stays an entry page (at most
 * 150 lines) that answers the common questions in one click, and every
 * relative link in README.md, CONTRIBUTING.md and docs/*.md leads to a file
 * of the repository — and to a heading of it, when it names one.
 */
import t from 'tap'
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs'
import path from 'node:path'
import { ROOT } from '../helpers/spawn.js'

const pages = ['README.md', 'CONTRIBUTING.md', ...readdirSync(path.join(ROOT, 'docs')).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`)]

/** GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens, repeats numbered. */
function anchors (markdown: string): Set<string> {
  const seen = new Map<string, number>()
  const found = new Set<string>()
  for (const m of withoutCode(markdown).matchAll(/^#{1,6}\s+(.+?)\s*#*\s*$/gm)) {
    const base = m[1].replace(/`/g, '').toLowerCase().replace(/[^\p{L}\p{N}\s_-]/gu, '').replace(/\s/g, '-')
    const n = seen.get(base) ?? 0
    seen.set(base, n + 1)
    found.add(n === 0 ? base : `${base}-${n}`)
  }
  return found
}

function withoutCode (markdown: string): string {
  return markdown.replace(/^(```|~~~)[\s\S]*?^\1/gm, '')
}

/** Relative links of a page: [text](target) outside code blocks; web and mail links are not ours to check. */
function links (markdown: string): string[] {
  return [...withoutCode(markdown).matchAll(/\[[^\]]*\]\(([^)\s]+)(?:\s+"[^"]*")?\)/g)].map((m) => m[1]).filter((l) => !/^[a-z][a-z0-9+.-]*:/i.test(l))
}

t.test('the README is an entry page of at most 150 lines', async (t) => {
  const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8')
  const lines = readme.split('\n').length - (readme.endsWith('\n') ? 1 : 0)
  t.ok(lines <= 150, `README.md has ${lines} lines`)
  t.match(readme, /npm start/)
  t.match(readme, /npm test/)
  // One click from the README answers each of these.
  for (const [question, target] of [
    ['run it', 'docs/operating.md'],
    ['test it', 'CONTRIBUTING.md#tests'],
    ['deploy it on Kubernetes', 'docs/operating.md#kubernetes'],
    ['fail over the database', 'docs/failover.md'],
    ['load-test before a campaign', 'docs/load-testing.md'],
    ['watch it live', 'docs/operating.md#watching-it-live'],
    ['see what the benchmarks show', 'docs/benchmarks.md'],
    ['set it up', 'docs/configuration.md']
  ]) {
    t.ok(links(readme).includes(target), `${question}: the README links ${target}`)
  }
})

t.test('every relative link resolves to a file of the repository, and to a heading when it names one', async (t) => {
  let checked = 0
  for (const page of pages) {
    const text = readFileSync(path.join(ROOT, page), 'utf8')
    t.notMatch(text, /\.\.\/shared\/|\/work\//, `${page}: names nothing outside the repository`)
    for (const link of links(text)) {
      checked++
      const [file, anchor] = link.split('#') as [string, string | undefined]
      const target = file === '' ? path.join(ROOT, page) : path.resolve(path.dirname(path.join(ROOT, page)), decodeURIComponent(file))
      t.ok(target.startsWith(ROOT + path.sep) || target === ROOT, `${page}: ${link} stays inside the repository`)
      if (!existsSync(target)) { t.fail(`${page}: ${link} — no such file`); continue }
      if (anchor !== undefined) {
        t.ok(statSync(target).isFile() && target.endsWith('.md') && anchors(readFileSync(target, 'utf8')).has(anchor), `${page}: ${link} — the heading exists`)
      }
    }
  }
  t.ok(checked > 30, `${checked} links checked`)
})

t.test('the anchor and link rules follow GitHub', async (t) => {
  t.same([...anchors('# The backend\'s API\n## E-mail: the mailer\n## A\n## A\n```\n# not a heading\n```\n')], ['the-backends-api', 'e-mail-the-mailer', 'a', 'a-1'])
  t.same(links('[a](docs/x.md#y) [b](https://example.org) `[c](z.md)` text\n```\n[d](no.md)\n```\n'), ['docs/x.md#y', 'z.md'])
})
