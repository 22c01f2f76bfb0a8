// --busy-poll in every role: `pmq dev --busy-poll` hands it to both of its children (storage
// node and broker), the client commands take it, and connect({ busyPoll: true }) opens the
// client's transport busy-polling (clients of one process share it, so they must agree).
import '../helpers/ucx-env.js';  // first: before the addon loads
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';

import t from 'tap';

import type { Connection } from '../../clients/connection.js';
import { connect } from '../../clients/index.js';
import { exitOf, runPmq, waitForLine } from '../helpers/broker-cluster.js';

const PMQ = ['--import', 'tsx', new URL('../../cli/pmq.ts', import.meta.url).pathname];
const dir = mkdtempSync('/dev/shm/pmq-busy-');
let dev: ChildProcess | undefined;
let broker = '';

t.before(async () => {
  dev = spawn(process.execPath, [...PMQ, 'dev', '--busy-poll', '--path', join(dir, 'region'),
    '--size', '16MiB', '--segment-size', '1MiB', '--listen', '127.0.0.1:0', '--broker-listen',
    '127.0.0.1:0', '--data-dir', join(dir, 'broker'), '--transports', 'tcp', '--log-level',
    'warn'], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, UCX_NET_DEVICES: 'lo' } });
  broker = (await waitForLine(dev, /broker at ([\d.]+:\d+)/))[1]!;
});

t.teardown(async () => {
  if (dev !== undefined && dev.exitCode === null) {
    dev.kill('SIGTERM');  // pmq dev stops its children, then exits
    await exitOf(dev);
  }
  rmSync(dir, { recursive: true, force: true });
});

/** The argv of each child of `pid`, from /proc. */
function childArgs(pid: number): string[][] {
  const pids = execFileSync('ps', ['-o', 'pid=', '--ppid', String(pid)], { encoding: 'utf8' })
    .split('\n').map((line) => line.trim()).filter((line) => line.length > 0);
  return pids.map((child) => readFileSync(`/proc/${child}/cmdline`, 'utf8').split('\0'));
}

t.test('pmq dev passes --busy-poll to the storage node and the broker', async (t) => {
  const children = childArgs(dev!.pid!);
  for (const role of ['storage', 'broker']) {
    const args = children.find((argv) => argv.includes(role));
    t.ok(args?.includes('--busy-poll'), `${role}: ${args?.join(' ')}`);
  }
});

t.test('the client commands take --busy-poll', async (t) => {
  const client = ['--broker', broker, '--transports', 'tcp', '--busy-poll'];
  const created = await runPmq(['topic', 'create', 'busy', '--partitions', '1', ...client]);
  t.equal(created.code, 0, created.stderr);
  const produced = await runPmq(['produce', 'busy', ...client], 'one\ntwo\n');
  t.equal(produced.code, 0, produced.stderr);
  const consumed = await runPmq(['consume', 'busy', '--from', 'earliest', '--max', '2',
    ...client]);
  t.equal(consumed.code, 0, consumed.stderr);
  t.same(consumed.stdout.split('\n').filter((line) => line.length > 0), ['one', 'two']);
});

t.test('connect({ busyPoll: true }) busy-polls; a second client must agree', async (t) => {
  const options = { brokers: [broker], transports: 'tcp', netDevices: 'lo' };
  const client = await connect({ ...options, busyPoll: true });
  t.teardown(() => client.close());
  // The clients' transport (native state is per handle): reached through the client's
  // connection, which the public API does not expose.
  const transport = (client as unknown as { connection: Connection }).connection.transport;
  t.match(transport.stats(), { open: true, busyPoll: true, spinMaxUs: 0 },
    'the clients\' one transport busy-polls');
  await t.rejects(connect({ ...options, busyPoll: false }), { code: 'PMQ_ERR_ARGUMENT' });
  await t.rejects(connect({ ...options, busyPoll: 'yes' as unknown as boolean }),
    { code: 'PMQ_ERR_ARGUMENT' });
  const again = await connect({ ...options, busyPoll: true });
  await again.close();
  t.pass('a client with the same options shares it');
});
