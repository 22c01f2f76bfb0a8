// `pmq storage` / `pmq dev` as a user runs them: a real process, a real region in a temp dir,
// a real UCX connection to the printed address, a clean stop on SIGINT.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync }
  from 'node:fs';
import { join } from 'node:path';

import t from 'tap';

import { Transport } from '../../native/transport.js';

const PMQ = ['--import', 'tsx', new URL('../../cli/pmq.ts', import.meta.url).pathname];

function startPmq(args: string[], env: Record<string, string> = {}): ChildProcess {
  const base = { ...process.env };
  delete base.PMQ_CLUSTER_KEY_FILE;
  return spawn(process.execPath, [...PMQ, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...base, UCX_NET_DEVICES: 'lo', ...env },
  });
}

async function waitForLine(child: ChildProcess, pattern: RegExp): Promise<RegExpExecArray> {
  // Listen with 'data' (not for-await, whose early return destroys the pipe: the child's next
  // write, "stopping" on SIGINT, would then fail with EPIPE and exit 1).
  let text = '';
  let errors = '';
  child.stderr!.on('data', (chunk) => { errors += String(chunk); });
  return new Promise((resolve, reject) => {
    child.stdout!.on('data', (chunk) => {
      text += String(chunk);
      const match = pattern.exec(text);
      if (match !== null) resolve(match);
    });
    child.once('exit', () => reject(new Error(
      `process ended before printing ${pattern}; output: ${text}; stderr: ${errors}`)));
  });
}

async function exitOf(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null) return child.exitCode;
  const [code] = await once(child, 'exit');
  return code as number | null;
}

t.test('pmq dev starts a storage node that accepts connections and stops on SIGINT', async (t) => {
  const dir = mkdtempSync('/dev/shm/pmq-cli-');
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const region = join(dir, 'region');
  const child = startPmq(['dev', '--path', region, '--size', '16MiB', '--listen', '127.0.0.1:0',
    '--segment-size', '1MiB', '--transports', 'sm,tcp', '--log-level', 'warn',
    '--broker-listen', '127.0.0.1:0', '--data-dir', join(dir, 'broker')]);
  t.teardown(() => { if (child.exitCode === null) child.kill('SIGKILL'); });
  const match = await waitForLine(child, /listening on ([\d.]+):(\d+) \(region (\S+), 16 MiB/);
  t.equal(match[3], region);
  const keyFile = join(dir, 'broker', 'cluster.key');
  t.match(readFileSync(keyFile, 'utf8'), /^[0-9a-f]{64}\n$/, 'pmq dev made its own cluster key');
  t.equal(statSync(keyFile).mode & 0o777, 0o600, 'readable by its owner only');
  await waitForLine(child, /pmq dev: broker at/);

  const transport = Transport.open({ transports: 'sm,tcp', netDevices: 'lo' });
  t.teardown(() => transport.close());
  const ep = await transport.connect(match[1]!, Number(match[2]));
  t.ok(transport.lanes(ep).length > 0, `lanes: ${transport.lanes(ep).join(',')}`);
  await transport.closeEndpoint(ep);

  child.kill('SIGINT');
  t.equal(await exitOf(child), 0, 'clean exit after SIGINT');
  t.ok(existsSync(region), 'the region file stays');
});

t.test('wrong flags, bad regions and bad key files give clear errors', async (t) => {
  const dir = mkdtempSync('/dev/shm/pmq-cli-');
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const key = join(dir, 'cluster.key');
  const short = join(dir, 'short.key');
  const garbled = join(dir, 'garbled.key');
  const keygen = startPmq(['keygen', '--out', key]);
  t.equal(await exitOf(keygen), 0, 'pmq keygen');
  const cases: [string[], RegExp][] = [
    [['storage', '--bogus'], /unknown option '--bogus'/],
    [['storage', '--size', 'lots'], /is not a size/],
    [['storage', '--listen', 'nowhere'], /not host:port/],
    [['storage', '--path', join(dir, 'missing', 'r'), '--size', '1MiB', '--cluster-key-file',
      key], /PMQ_ERR_REGION_NO_DIR/],
    [['storage', '--path', join(dir, 'r')], new RegExp('no cluster key: pass --cluster-key-' +
      'file FILE \\(make one with `pmq keygen --out FILE`\\)')],
    [['broker', '--storage', '127.0.0.1:1', '--data-dir', dir], /no cluster key: pass/],
    [['storage', '--cluster-key-file', join(dir, 'nope')], /nope does not exist: make one with/],
    [['storage', '--cluster-key-file', short], /holds 10 hex characters, a cluster key is 64/],
    [['storage', '--cluster-key-file', garbled], /not a cluster key: expected 64 hex/],
    [['keygen', '--out', key], /exists: .*pass --force/],
  ];
  writeFileSync(short, '0123456789\n');
  writeFileSync(garbled, `${'z'.repeat(64)}\n`);
  for (const [args, expected] of cases) {
    const child = startPmq(args);
    let stderr = '';
    child.stderr!.on('data', (chunk) => { stderr += String(chunk); });
    t.equal(await exitOf(child), 1, `exit 1: ${args.join(' ')}`);
    t.match(stderr, expected);
  }
});

t.test('pmq keygen: mode 0600, --force replaces, a readable key file is warned about',
  async (t) => {
    const dir = mkdtempSync('/dev/shm/pmq-cli-');
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    const key = join(dir, 'k');
    t.equal(await exitOf(startPmq(['keygen', '--out', key])), 0);
    const first = readFileSync(key, 'utf8');
    t.equal(statSync(key).mode & 0o777, 0o600);
    t.equal(await exitOf(startPmq(['keygen', '--out', key])), 1, 'no overwrite');
    t.equal(readFileSync(key, 'utf8'), first, 'the key stays');
    t.equal(await exitOf(startPmq(['keygen', '--out', key, '--force'])), 0, '--force');
    t.not(readFileSync(key, 'utf8'), first, 'a new key');
    t.equal(statSync(key).mode & 0o777, 0o600);
    chmodSync(key, 0o644);
    const child = startPmq(['storage', '--path', join(dir, 'r'), '--size', '1MiB',
      '--segment-size', '64KiB',
      '--listen', '127.0.0.1:0', '--transports', 'tcp', '--log-level', 'warn'],
    { PMQ_CLUSTER_KEY_FILE: key });
    let stderr = '';
    child.stderr!.on('data', (chunk) => { stderr += String(chunk); });
    await waitForLine(child, /listening on/);
    child.kill('SIGINT');
    t.equal(await exitOf(child), 0, 'the key from PMQ_CLUSTER_KEY_FILE is used');
    t.match(stderr, /can be read by group or others \(mode 644\): chmod 600/);
  });
