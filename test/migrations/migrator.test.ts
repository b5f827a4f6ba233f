/**
 * The migrations run from the build (dist/migrations/*.js, run by
 * `node dist/scripts/migrate.js` and the backends' init containers): the
 * migrator finds compiled files by name as it finds the sources. The folder
 * is compiled here the way tsc emits it (one .js per .ts, with source maps
 * beside them), without the type check, so the test stays quick.
 */
import t, { type Test } from 'tap'
import { randomBytes } from 'node:crypto'
import pg from 'pg'
import { mkdtemp, readdir, readFile, rm, symlink, writeFile, mkdir } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { pathToFileURL } from 'node:url'
import ts from 'typescript'
import { ROOT } from '../helpers/spawn.js'
import { startEmbeddedDatabase } from '../../common/embedded-db.js'
import { createDatabase } from '../../common/db.js'

/** A database without any schema: a fresh one on DATABASE_URL's server, else the embedded one. */
async function emptyDatabase (t: Test): Promise<string> {
  const adminUrl = process.env.DATABASE_URL
  if (!adminUrl) {
    const embedded = await startEmbeddedDatabase({ dataDir: 'memory://' })
    t.teardown(embedded.close)
    return embedded.url
  }
  const name = `fc_test_${process.pid}_${randomBytes(4).toString('hex')}`
  const admin = new pg.Client({ connectionString: adminUrl })
  await admin.connect()
  await admin.query(`create database ${name}`)
  await admin.end()
  t.teardown(async () => {
    const c = new pg.Client({ connectionString: adminUrl })
    await c.connect()
    await c.query(`drop database if exists ${name} with (force)`)
    await c.end()
  })
  return Object.assign(new URL(adminUrl), { pathname: `/${name}` }).toString()
}

t.test('compiled migrations are found and applied in order', async (t) => {
  const out = await mkdtemp(path.join(tmpdir(), 'fc-dist-'))
  t.teardown(() => rm(out, { recursive: true, force: true }))
  // Compiled files import kysely: they resolve it from the project's node_modules, as dist/ does.
  await symlink(path.join(ROOT, 'node_modules'), path.join(out, 'node_modules'))
  await mkdir(path.join(out, 'migrations'))
  const sources = (await readdir(path.join(ROOT, 'migrations'))).filter((f) => f.endsWith('.ts'))
  const options = ts.readConfigFile(path.join(ROOT, 'tsconfig.json'), ts.sys.readFile).config.compilerOptions
  // What tsc emits under NodeNext for a "type": "module" package: ES modules.
  const { options: compilerOptions } = ts.convertCompilerOptionsFromJson({ ...options, module: 'ESNext', moduleResolution: 'Bundler', noEmit: false, sourceMap: true }, ROOT)
  for (const file of sources) {
    const js = ts.transpileModule(await readFile(path.join(ROOT, 'migrations', file), 'utf8'), { compilerOptions, fileName: file })
    await writeFile(path.join(out, 'migrations', file.replace(/\.ts$/, '.js')), js.outputText)
    await writeFile(path.join(out, 'migrations', file.replace(/\.ts$/, '.js.map')), js.sourceMapText ?? '')
  }
  // ESM: the emitted files are modules because the package says so.
  await writeFile(path.join(out, 'package.json'), JSON.stringify({ type: 'module' }))

  const handle = createDatabase({ url: await emptyDatabase(t), max: 1, statementTimeoutMs: 60_000, connectTimeoutMs: 30_000 })
  t.teardown(handle.close)
  const { migrateToLatest } = await import(pathToFileURL(path.join(out, 'migrations', 'migrator.js')).href) as typeof import('../../migrations/migrator.js')
  const result = await migrateToLatest(handle.db)
  const expected = sources.filter((f) => f !== 'migrator.ts').map((f) => f.replace(/\.ts$/, '')).sort()
  t.same(result.results?.map((r) => [r.migrationName, r.status]), expected.map((name) => [name, 'Success']), 'every migration, from its .js, in order')
  const tables = await handle.db.selectFrom('information_schema.tables' as never).select('table_name' as never).where('table_schema' as never, '=', 'public' as never).execute()
  t.ok(tables.length > 3, `the schema exists (${tables.length} tables)`)
})
