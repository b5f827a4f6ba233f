/**
 * The production image runs built code as PID 1's only child: its build stage
 * runs `npm run build` (tsc into dist/), its runtime stage takes dist/ from
 * there, tini is the entrypoint, and the default command is a `node dist/…js`
 * whose source exists. The build covers every entry point a deployment runs,
 * and dist/ is never committed.
 */
import t from 'tap'
import { readFileSync } from 'node:fs'
import path from 'node:path'
import ts from 'typescript'
import { ROOT } from '../helpers/spawn.js'
import { ENTRY_POINTS, productionCommand } from '../helpers/production-command.js'

const dockerfile = readFileSync(path.join(ROOT, 'Dockerfile'), 'utf8')
/** Stages by name, each its instructions (continuation lines joined). */
const stages = new Map<string, string[]>()
let current: string[] = []
for (const line of dockerfile.replace(/\\\n/g, ' ').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'))) {
  const from = /^FROM \S+(?: AS (\S+))?$/i.exec(line)
  if (from) { current = []; stages.set(from[1] ?? `stage${stages.size}`, current) } else current.push(line)
}

t.test('the build stage compiles, the runtime stage runs the build under tini', async (t) => {
  const build = stages.get('build')
  t.ok(build, 'a build stage')
  t.ok(build?.includes('RUN npm run build'), 'it runs npm run build')
  const runtime = [...stages.values()].at(-1)!
  t.ok(runtime.includes('COPY --from=build /app/dist ./dist'), 'the runtime stage takes dist/ from the build stage')
  const json = (instruction: string) => {
    const line = runtime.find((l) => l.startsWith(`${instruction} `))
    return line ? JSON.parse(line.slice(instruction.length + 1)) as string[] : undefined
  }
  t.same(json('ENTRYPOINT'), ['/usr/bin/tini', '--'], 'tini is PID 1 (signals passed on, orphans reaped)')
  t.ok(runtime.some((l) => /apt-get install .*\btini\b/.test(l)), 'and is installed')
  const cmd = productionCommand(json('CMD'))
  t.type(cmd, 'object', `the default command is built code: ${JSON.stringify(json('CMD'))} (${typeof cmd === 'string' ? cmd : cmd.source})`)
  t.notOk(runtime.some((l) => /^(CMD|ENTRYPOINT) .*"(npm|npx|tsx)"/.test(l)), 'no npm, npx or tsx as the process')
})

t.test('npm run build emits every entry point into dist/, which git ignores', async (t) => {
  const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> }
  t.ok(pkg.scripts.build, 'a build script')
  const config = ts.getParsedCommandLineOfConfigFile(path.join(ROOT, 'tsconfig.build.json'), {}, { ...ts.sys, onUnRecoverableConfigFileDiagnostic: () => {} })!
  t.equal(config.options.noEmit, false, 'the build emits')
  t.equal(path.relative(ROOT, config.options.outDir!), 'dist')
  t.equal(path.relative(ROOT, config.options.rootDir!), '', 'dist/ mirrors the source tree (dist/backend/server.js is backend/server.ts)')
  const roots = new Set(config.fileNames.map((f) => path.relative(ROOT, f)))
  for (const source of Object.keys(ENTRY_POINTS)) t.ok(roots.has(source), `${source} is built`)
  t.notOk([...roots].some((f) => f.startsWith('test/')), 'tests are not built')
  // The build stage has every folder the build compiles: a role whose sources are not copied in is not built.
  const copied = new Set((stages.get('build') ?? []).map((l) => /^COPY (\S+) \.\/\1$/.exec(l)?.[1]).filter(Boolean))
  for (const folder of new Set([...roots].map((f) => f.split('/')[0]).filter((f) => !f.includes('.')))) t.ok(copied.has(folder), `the build stage copies ${folder}/`)
  t.match(readFileSync(path.join(ROOT, '.gitignore'), 'utf8'), /^\/?dist\/?$/m, 'dist/ is ignored')
})
