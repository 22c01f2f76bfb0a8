// What `pmq consume --group` commits (issue 13, bugs 5 and 6), through real processes:
// - --from latest commits where each partition started even when nothing arrived, so the next
//   run of the group reads only what came after (as a member, and with --partition);
// - with the reader of its output gone (EPIPE), it commits only records that left the process:
//   never a batch still in its buffer, so the committed records fit in what the reader read
//   plus what the pipe held.
import '../helpers/ucx-env.js';  // first: before the addon loads
import { spawn } from 'node:child_process';

import t from 'tap';

import type { Client } from '../../clients/index.js';
import {
  exitOf, runPmq, tempDir, type Proc,
} from '../helpers/broker-cluster.js';
import { startClusterWithClient, type ClusterWithClient } from '../helpers/cluster-client.js';

const PMQ = new URL('../../cli/pmq.ts', import.meta.url).pathname;
/** Linux's default pipe capacity: bytes flushed into the pipe that the reader may never read. */
const PIPE_BYTES = 65_536;

const { dir, remove } = tempDir('pmq-consume-commit-');
let storage: Proc;
let broker: Proc;
let client: Client;
let cluster: ClusterWithClient | undefined;

t.teardown(async () => {
  await cluster?.stop();
  remove();
});

t.before(async () => {
  cluster = await startClusterWithClient(dir, ['--size', '64MiB', '--segment-size', '2MiB']);
  ({ storage, broker, client } = cluster);
});

const brokerFlag = (): string[] => ['--broker', `${broker.host}:${broker.port}`,
  '--transports', 'tcp'];

async function produce(topic: string, values: string[], partition = 0): Promise<void> {
  const producer = client.producer();
  await producer.send({ topic, partition, records: values.map((value) => ({ value })) });
  await producer.close();
}

async function committed(group: string): Promise<number> {
  const description = await client.admin().describeGroup(group);
  return description.offsets.reduce((sum, o) => sum + Math.max(0, o.offset), 0);
}

t.test('bug 5: --from latest commits the start of partitions that received nothing',
  async (t) => {
    await client.admin().createTopic('latest', { partitions: 2 });
    await produce('latest', ['a', 'b', 'c', 'd', 'e']);
    for (const extra of [[], ['--partition', '0']]) {
      const group = `gl${extra.length}`;
      const first = await runPmq(['consume', 'latest', '--group', group, '--from', 'latest',
        '--timeout-ms', '1500', ...extra, ...brokerFlag()]);
      t.equal(first.code, 0, first.stderr);
      t.equal(first.stdout, '', 'nothing new yet');
      t.equal(await committed(group), 5, `${group}: the start (the high watermark) committed`);
    }
    await produce('latest', ['f', 'g', 'h']);
    for (const extra of [[], ['--partition', '0']]) {
      const group = `gl${extra.length}`;
      const next = await runPmq(['consume', 'latest', '--group', group, '--timeout-ms', '1500',
        ...extra, ...brokerFlag()]);
      t.equal(next.stdout, 'f\ng\nh\n', `${group}: the next run reads only what came after`);
    }
  });

t.test('bug 6: only records flushed before the reader went away are committed', async (t) => {
  await client.admin().createTopic('piped', { partitions: 1 });
  const line = (i: number): string => `${String(i).padStart(8, '0')}-${'x'.repeat(990)}`;
  for (let round = 0; round < 4; round += 1) {
    // One send, one large batch: before the fix a batch counted as printed once handed to
    // stdout, buffered or not.
    await produce('piped', Array.from({ length: 500 }, (_, i) => line(round * 500 + i)));
  }
  const child = spawn(process.execPath, ['--import', 'tsx', PMQ, 'consume', 'piped', '--group',
    'gp', '--log-level', 'error', ...brokerFlag()],
  { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, UCX_NET_DEVICES: 'lo' } });
  let stderr = '';
  child.stderr!.on('data', (chunk) => { stderr += String(chunk); });
  // As `| head -5`: read five lines, then close the read end of the pipe.
  let bytesRead = 0;
  await new Promise<void>((resolve) => {
    child.stdout!.on('data', (chunk: Buffer) => {
      bytesRead += chunk.byteLength;
      if (bytesRead >= 5 * 1000) {
        child.stdout!.destroy();
        resolve();
      }
    });
  });
  t.equal(await exitOf(child), 0, stderr);
  t.match(stderr, /stopped: the reader of the output went away/);
  const records = await committed('gp');
  t.ok(records * 1000 <= bytesRead + PIPE_BYTES,
    `${records} records committed: no more than read (${bytesRead} bytes) plus a pipe's worth`);
});
