/**
 * The cluster suite: consumers reading in direct mode over a real verbs stack (UCX rc_verbs on
 * soft-RoCE), run inside the VM by test/rdma/run-in-vm.sh after rdma-suite.ts.
 *
 * `pmq storage --direct` and `pmq broker` run as the CLI users run (dist/cli/pmq.js under this
 * process's node, i.e. the guest's copy) on the rxe address, a region under /dev/shm. This
 * process is the client: it produces records with validated writes, then consumes them with
 * dataPath 'direct' (one-sided RDMA gets with keys from the storage node) and 'auto', checking
 * every record byte for byte (the consumer CRC-checks every batch), the lanes (RDMA on both
 * sides), that every read went direct, and that the storage node exported a key per segment.
 *   PMQ_RDMA_HOST (198.18.0.1)  PMQ_RDMA_TLS (rc_verbs)  PMQ_CLUSTER_RECORDS (400)
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { connect, type Client, type DataPath } from '../../clients/index.js';
import { check, expect, runSuite, say, within } from './checks.js';

const HOST = process.env.PMQ_RDMA_HOST ?? '198.18.0.1';
const TLS = process.env.PMQ_RDMA_TLS ?? 'rc_verbs';
const RECORDS = Number(process.env.PMQ_CLUSTER_RECORDS ?? 400);
const RDMA_LANES = ['rc_verbs', 'rc_mlx5', 'dc_mlx5', 'rc', 'dc'];
/** The project root: this file runs as build/vm/js/test/rdma/cluster-suite.js. */
const ROOT = fileURLToPath(new URL('../../../../../', import.meta.url));
const PMQ = join(ROOT, 'dist/cli/pmq.js');
const DIR = mkdtempSync('/dev/shm/pmq-cluster-suite-');
const START_MS = 180_000;

interface Running { child: ChildProcess; host: string; port: number; stderr: () => string }
const children: ChildProcess[] = [];

function startPmq(args: string[], pattern: RegExp): Promise<Running> {
  const child = spawn(process.execPath, [PMQ, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let errors = '';
  child.stderr!.on('data', (chunk) => { errors += String(chunk); });
  let text = '';
  const started = new Promise<Running>((resolve, reject) => {
    child.stdout!.on('data', (chunk) => {
      text += String(chunk);
      const match = pattern.exec(text);
      if (match !== null) resolve({ child, host: match[1]!, port: Number(match[2]),
        stderr: () => errors });
    });
    child.once('exit', (code) => reject(new Error(`pmq ${args[0]} exited (${code}): ` +
      `${text} ${errors.slice(-2000)}`)));
  });
  return within(START_MS, `pmq ${args[0]} start`, started);
}

function logLines(running: Running, msg: string): Record<string, unknown>[] {
  return running.stderr().split('\n').filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as Record<string, unknown>)
    .filter((line) => line.msg === msg);
}

function valueOf(i: number): string {
  return `record ${i} `.padEnd(150 + (i % 101), String.fromCharCode(97 + (i % 26)));
}

async function produce(brokers: string[]): Promise<void> {
  const client = await connect({ brokers, transports: TLS, dataPath: 'direct' });
  try {
    await client.admin().createTopic('direct', { partitions: 1 });
    const producer = client.producer({ lingerMs: 5 });
    await Promise.all(Array.from({ length: RECORDS }, (_, i) => producer.send({
      topic: 'direct', partition: 0, records: [{ value: valueOf(i) }] })));
  } finally {
    await client.close();
  }
}

/** Reads every record from offset 0 and checks it; returns the client's data paths. */
async function consumeAll(brokers: string[], dataPath: DataPath): Promise<Client> {
  const client = await connect({ brokers, transports: TLS, dataPath });
  const consumer = client.consumer({ start: 'earliest', maxWaitMs: 200,
    readChunkBytes: 16 * 1024 });
  await consumer.assign([{ topic: 'direct', partition: 0 }]);
  const text = new TextDecoder();
  let next = 0;
  for await (const record of consumer) {
    expect(record.offset === next, `offset ${record.offset}, expected ${next}`);
    expect(text.decode(record.value!) === valueOf(next), `record ${next} differs`);
    next += 1;
    if (next === RECORDS) break;
  }
  await consumer.close();
  return client;
}

async function readsDirect(brokers: string[], dataPath: DataPath): Promise<void> {
  const client = await consumeAll(brokers, dataPath);
  try {
    const paths = client.dataPaths();
    say(`# ${dataPath}: ${JSON.stringify(paths)}`);
    expect(paths.length === 1, 'one storage node read from');
    const [path] = paths;
    expect(path!.dataPath === 'direct', `data path ${path!.dataPath}`);
    expect(path!.lanes.length > 0 && path!.lanes.every((l) => RDMA_LANES.includes(l)),
      `lanes ${path!.lanes.join(',')}`);
    expect(path!.reads.direct > 0 && path!.reads.validated === 0,
      `reads ${JSON.stringify(path!.reads)}`);
  } finally {
    await client.close();
  }
}

async function main(): Promise<void> {
  const started = Date.now();
  const key = `${DIR}/cluster.key`;
  const keygen = spawnSync(process.execPath, [PMQ, 'keygen', '--out', key], { stdio: 'inherit' });
  expect(keygen.status === 0, `pmq keygen exited ${keygen.status}`);
  const storage = await startPmq(['storage', '--direct', '--path', `${DIR}/region`, '--size',
    '16MiB', '--segment-size', '64KiB', '--node-id', '1', '--listen', `${HOST}:0`,
    '--transports', TLS, '--log-level', 'info', '--cluster-key-file', key],
  /listening on ([\d.]+):(\d+)/);
  const broker = await startPmq(['broker', '--listen', `${HOST}:0`, '--storage',
    `${storage.host}:${storage.port}`, '--data-dir', `${DIR}/broker`, '--transports', TLS,
    '--log-level', 'warn', '--cluster-key-file', key], /listening on ([\d.]+):(\d+) \(epoch/);
  say(`# storage and broker up after ${Date.now() - started} ms`);
  const brokers = [`${broker.host}:${broker.port}`];
  await check(`produce ${RECORDS} records (validated writes over ${TLS})`,
    () => produce(brokers), 300_000);
  await check("consume every record with dataPath 'direct': in order, byte for byte, " +
    'CRC-checked, every read one-sided, lanes RDMA', () => readsDirect(brokers, 'direct'),
  300_000);
  await check("dataPath 'auto' chooses direct over RDMA lanes", () =>
    readsDirect(brokers, 'auto'), 300_000);
  await check('storage node: RDMA lanes for its peers, a key per segment read', async () => {
    const peers = logLines(storage, 'peer connected');
    const exported = logLines(storage, 'direct key exported');
    say(`# storage: ${peers.length} peers, lanes ${JSON.stringify(peers.map((p) => p.lanes))}; ` +
      `${exported.length} keys exported (segments ${exported.map((e) => e.segment).join(',')})`);
    expect(peers.length > 0 && peers.every((p) => (p.lanes as string[]).every((l) =>
      RDMA_LANES.includes(l))), 'non-RDMA lanes at the storage node');
    const segments = new Set(exported.map((e) => e.segment));
    expect(segments.size >= 2, `keys for ${segments.size} segments (the records span ≥ 2)`);
  });
  say(`# run time ${((Date.now() - started) / 1000).toFixed(1)} s (suite process, after start)`);
}

function cleanUp(): void {
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
  rmSync(DIR, { recursive: true, force: true });
}

runSuite('cluster', main, cleanUp);
