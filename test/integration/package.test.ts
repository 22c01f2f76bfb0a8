// pmq as a package (issue 13, bug 8): `npm pack` ships what a user needs (dist/ with type
// declarations, the prebuilt linux-x64 addon, the native sources and binding.gyp for the
// fallback build, README, docs, LICENSE) and nothing else (no test/, tools/, bench/ sources,
// .ci, source maps, build/); the tarball installs into a fresh project (offline from npm's
// cache where it can), `npx pmq --version` runs, the installed `pmq dev` starts a cluster, a
// producer/consumer round trip runs from plain Node (.mjs) and from TypeScript (type-checked
// against the shipped declarations with `tsc --noEmit`, then run); and with the prebuilt
// binary removed, `npm rebuild pmq` (install scripts allowed) builds the addon from the
// shipped sources and the round trip runs on that build.
import { spawn, spawnSync, type ChildProcess, type SpawnSyncReturns } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, existsSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import t from 'tap';

import { exitOf, waitForLine } from '../helpers/broker-cluster.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const TSC = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
const TSX = import.meta.resolve('tsx');
const work = mkdtempSync(join(tmpdir(), 'pmq-package-'));
const app = join(work, 'app');
let dev: ChildProcess | undefined;
t.teardown(() => {
  if (dev !== undefined && dev.exitCode === null) dev.kill('SIGKILL');
  rmSync(work, { recursive: true, force: true });
});

// The package's processes must not see tap's loader hooks (they import from this checkout).
const ENV = Object.fromEntries(Object.entries(process.env).filter(([name]) =>
  name !== 'NODE_OPTIONS' && !name.startsWith('TAP'))) as NodeJS.ProcessEnv;

function run(command: string, args: string[], cwd: string, timeoutMs = 180_000):
  SpawnSyncReturns<string> {
  const result = spawnSync(command, args, { cwd, encoding: 'utf8', timeout: timeoutMs,
    env: { ...ENV, UCX_NET_DEVICES: 'lo', UCX_TLS: 'tcp' } });
  if (result.status !== 0) {
    throw new Error(`${command} ${args.join(' ')} exited ${result.status}: ${result.stderr}` +
      `${result.stdout}`);
  }
  return result;
}

const ROUND_TRIP_MJS = `import { connect, PmqError } from 'pmq';
const [broker, topic] = process.argv.slice(2);
const client = await connect({ brokers: [broker], transports: 'tcp' });
await client.admin().createTopic(topic, { partitions: 2 });
const producer = client.producer();
const values = Array.from({ length: 50 }, (_, i) => 'mjs-' + i);
await producer.send({ topic, records: values.map((value) => ({ key: value, value })) });
await producer.flush();
const consumer = client.consumer({ start: 'earliest' });
await consumer.subscribe(topic);
const seen = [];
for await (const record of consumer) {
  seen.push(Buffer.from(record.value).toString());
  if (seen.length === values.length) break;
}
await client.close();
console.log(JSON.stringify({ same: [...seen].sort().join() === [...values].sort().join(),
  count: seen.length, pmqError: typeof PmqError }));
`;

const ROUND_TRIP_TS = `import { connect, PmqError } from 'pmq';
import type { ConsumerRecord, RecordMetadata } from 'pmq';
const [broker, topic] = process.argv.slice(2) as [string, string];
const client = await connect({ brokers: [broker], transports: 'tcp' });
await client.admin().createTopic(topic, { partitions: 1 });
const metadata: RecordMetadata[] = await client.producer().send({ topic,
  records: [{ value: 'typed-0' }, { value: 'typed-1' }] });
const consumer = client.consumer({ start: 'earliest' });
await consumer.subscribe(topic);
const seen: ConsumerRecord[] = [];
for await (const record of consumer) {
  seen.push(record);
  if (seen.length === 2) break;
}
await client.close();
const ok: boolean = seen.map((r) => Buffer.from(r.value ?? []).toString()).join() ===
  'typed-0,typed-1' && metadata.length === 2 &&
  new PmqError('PMQ_ERR_ARGUMENT', 'x') instanceof Error;
console.log(JSON.stringify({ ok }));
`;

const TSCONFIG = {
  compilerOptions: { target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext',
    strict: true, noEmit: true, skipLibCheck: false, types: ['node'],
    typeRoots: [join(ROOT, 'node_modules', '@types')] },
  files: ['round-trip.ts'],
};

t.test('npm pack ships what a user needs and nothing else', async (t) => {
  const packed = run('npm', ['pack', '--pack-destination', work, '--json'], ROOT);
  const [info] = JSON.parse(packed.stdout.slice(packed.stdout.indexOf('['))) as
    { filename: string; files: { path: string }[] }[];
  const paths = info!.files.map((file) => file.path);
  for (const needed of ['package.json', 'README.md', 'LICENSE', 'ARCHITECTURE.md',
    'dist/clients/index.js', 'dist/clients/index.d.ts', 'dist/cli/pmq.js',
    'prebuilds/linux-x64/pmq_native.node', 'binding.gyp', 'native/region.cc', 'native/region.h',
    'scripts/install-native.mjs', 'docs/clients.md', 'docs/metrics.md']) {
    t.ok(paths.includes(needed), `ships ${needed}`);
  }
  const unwanted = paths.filter((path) => /^(test|tools|bench|build|\.ci|scripts\/setup)/
    .test(path) || path.endsWith('.map') || /^dist\/(test|tools)\//.test(path) ||
    /^native\/.*\.ts$/.test(path));
  t.same(unwanted, [], 'no tests, tools, bench sources, CI, maps or local builds');
  writeFileSync(join(work, 'tarball'), info!.filename);
});

t.test('the tarball installs into a fresh project; npx pmq --version runs', async (t) => {
  const tarball = join(work, readFileSync(join(work, 'tarball'), 'utf8'));
  run('mkdir', ['-p', app], work);
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'app', private: true,
    type: 'module' }));
  const started = performance.now();
  run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', tarball], app);
  t.comment(`npm install took ${Math.round(performance.now() - started)} ms`);
  t.equal(run('npx', ['--no-install', 'pmq', '--version'], app).stdout.trim(), '0.1.0');
});

t.test('the installed pmq dev runs; a round trip from .mjs and from TypeScript', async (t) => {
  dev = spawn(process.execPath, [join(app, 'node_modules/pmq/dist/cli/pmq.js'), 'dev',
    '--path', join(work, 'region'), '--size', '32MiB', '--segment-size', '1MiB',
    '--listen', '127.0.0.1:0', '--broker-listen', '127.0.0.1:0', '--data-dir',
    join(work, 'broker'), '--transports', 'tcp', '--log-level', 'warn'],
  { cwd: app, stdio: ['ignore', 'pipe', 'pipe'], env: { ...ENV, UCX_NET_DEVICES: 'lo' } });
  const broker = (await waitForLine(dev, /broker at ([\d.]+:\d+)/))[1]!;

  writeFileSync(join(app, 'round-trip.mjs'), ROUND_TRIP_MJS);
  const mjs = run(process.execPath, ['round-trip.mjs', broker, 'from-mjs'], app, 60_000);
  t.same(JSON.parse(mjs.stdout.trim().split('\n').at(-1)!), { same: true, count: 50,
    pmqError: 'function' });

  writeFileSync(join(app, 'round-trip.ts'), ROUND_TRIP_TS);
  writeFileSync(join(app, 'tsconfig.json'), JSON.stringify(TSCONFIG));
  run(process.execPath, [TSC, '-p', 'tsconfig.json'], app, 120_000);
  const typed = run(process.execPath, ['--import', TSX, 'round-trip.ts', broker, 'from-ts'],
    app, 60_000);
  t.same(JSON.parse(typed.stdout.trim().split('\n').at(-1)!), { ok: true });
  writeFileSync(join(app, 'broker'), broker);
});

t.test('without the prebuilt binary, npm rebuild pmq builds the addon from source',
  async (t) => {
    const pmq = join(app, 'node_modules', 'pmq');
    rmSync(join(pmq, 'prebuilds'), { recursive: true, force: true });
    const manifest = JSON.parse(readFileSync(join(app, 'package.json'), 'utf8')) as object;
    writeFileSync(join(app, 'package.json'), JSON.stringify({ ...manifest,
      allowScripts: { pmq: true } }));
    const started = performance.now();
    run('npm', ['rebuild', 'pmq'], app, 300_000);
    t.comment(`npm rebuild pmq (node-gyp) took ${Math.round(performance.now() - started)} ms`);
    t.ok(existsSync(join(pmq, 'build', 'Release', 'pmq_native.node')), 'the addon was built');
    const broker = readFileSync(join(app, 'broker'), 'utf8');
    const mjs = run(process.execPath, ['round-trip.mjs', broker, 'after-rebuild'], app, 60_000);
    t.match(mjs.stdout, /"same":true/);
    dev!.kill('SIGINT');
    t.equal(await exitOf(dev!), 0, 'the installed pmq dev stops cleanly');
  });
