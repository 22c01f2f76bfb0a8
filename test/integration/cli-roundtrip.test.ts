// The client commands as a user runs them, against `pmq dev` (a storage node and a broker as
// child processes on 127.0.0.1, a /dev/shm region): topic create/list/describe, produce from a
// pipe, consume (text and JSON, with keys and a consumer group), wrong flags, and `pmq inspect`
// on the stopped node's region — clean, and with one byte flipped inside a batch of a copy.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { copyFileSync, mkdtempSync, openSync, readSync, rmSync, writeSync, closeSync } from
  'node:fs';
import { join } from 'node:path';

import t from 'tap';

import { exitOf, waitForLine } from '../helpers/broker-cluster.js';

const PMQ = ['--import', 'tsx', new URL('../../cli/pmq.ts', import.meta.url).pathname];
const CLIENT = ['--transports', 'tcp'];

interface Run { code: number | null; stdout: string; stderr: string }

let brokerAddress = '';

/** Runs `pmq args`, feeding `input` to its stdin through a pipe; collects both outputs. */
async function pmq(args: string[], input?: string | Buffer): Promise<Run> {
  const child = spawn(process.execPath, [...PMQ, ...args], { stdio: ['pipe', 'pipe', 'pipe'],
    env: { ...process.env, UCX_NET_DEVICES: 'lo', PMQ_BROKER: brokerAddress } });
  const stdout: Buffer[] = [];
  const stderr: Buffer[] = [];
  child.stdout.on('data', (chunk: Buffer) => stdout.push(chunk));
  child.stderr.on('data', (chunk: Buffer) => stderr.push(chunk));
  child.stdin.on('error', () => undefined);  // a command that fails early stops reading
  child.stdin.end(input ?? '');
  const [code] = await once(child, 'close');
  return { code: code as number | null, stdout: Buffer.concat(stdout).toString(),
    stderr: Buffer.concat(stderr).toString() };
}

const lines = (text: string): string[] => text.split('\n').filter((line) => line.length > 0);

const dir = mkdtempSync('/dev/shm/pmq-cli-rt-');
const regionPath = join(dir, 'region');
let dev: ChildProcess | undefined;
t.teardown(() => {
  if (dev !== undefined && dev.exitCode === null) dev.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

const input = Array.from({ length: 3000 }, (_, i) => `line-${i}-${(i * 7919) % 1000}`);

t.before(async () => {
  dev = spawn(process.execPath, [...PMQ, 'dev', '--path', regionPath, '--size', '32MiB',
    '--segment-size', '1MiB', '--listen', '127.0.0.1:0', '--broker-listen', '127.0.0.1:0',
    '--data-dir', join(dir, 'broker'), '--transports', 'tcp', '--log-level', 'warn'],
  { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, UCX_NET_DEVICES: 'lo' } });
  const match = await waitForLine(dev, /broker at ([\d.]+:\d+)/);
  brokerAddress = match[1]!;
});

t.test('topic create, produce from a pipe, consume the same lines', async (t) => {
  const created = await pmq(['topic', 'create', 't', '--partitions', '3', ...CLIENT]);
  t.equal(created.code, 0, created.stderr);
  // Small batches: keyless records move to the next partition with each batch (sticky).
  const produced = await pmq(['produce', 't', '--print-offsets', '--batch-bytes', '16KiB',
    ...CLIENT],
    `${input.join('\n')}\n`);
  t.equal(produced.code, 0, produced.stderr);
  t.match(produced.stderr, /3000 records .* acknowledged to t/);
  const offsets = lines(produced.stdout).map((line) => line.split('\t').map(Number));
  t.equal(offsets.length, input.length, 'one partition/offset line per record');

  const consumed = await pmq(['consume', 't', '--max', '3000', '--from', 'earliest', ...CLIENT]);
  t.equal(consumed.code, 0, consumed.stderr);
  t.same(lines(consumed.stdout).sort(), [...input].sort(), 'the same lines, as a multiset');

  // Per-partition order: the JSON records of each partition, by offset, are the input lines
  // of that partition in input order (and at the offsets produce printed).
  const json = await pmq(['consume', 't', '--max', '3000', '--format', 'json', ...CLIENT]);
  t.equal(json.code, 0, json.stderr);
  const records = lines(json.stdout).map((line) => JSON.parse(line) as
    { partition: number; offset: number; value: string });
  for (const partition of [0, 1, 2]) {
    const expected = input.filter((_, i) => offsets[i]![0] === partition);
    const expectedOffsets = offsets.filter(([p]) => p === partition).map(([, o]) => o);
    const got = records.filter((r) => r.partition === partition);
    t.same(got.map((r) => r.value), expected, `partition ${partition}: input order`);
    t.same(got.map((r) => r.offset), expectedOffsets, `partition ${partition}: offsets`);
  }
});

t.test('keys, JSON and bytes that are not UTF-8', async (t) => {
  t.equal((await pmq(['topic', 'create', 'keyed', '--partitions', '4', ...CLIENT])).code, 0);
  const keyed = Array.from({ length: 200 }, (_, i) => `k${i % 7}=v=${i}`);
  const produced = await pmq(['produce', 'keyed', '--key-separator', '=', ...CLIENT],
    Buffer.concat([Buffer.from(`${keyed.join('\n')}\n`), Buffer.from([0x62, 0x3d, 0xff, 0x0a])]));
  t.equal(produced.code, 0, produced.stderr);
  const json = await pmq(['consume', 'keyed', '--max', '201', '--format', 'json', ...CLIENT]);
  t.equal(json.code, 0, json.stderr);
  const records = lines(json.stdout).map((line) => JSON.parse(line) as { topic: string;
    partition: number; key: string; value: unknown; headers: unknown[]; timestamp: number });
  t.equal(records.length, 201);
  t.same(records.filter((r) => typeof r.value === 'string')
    .map((r) => `${r.key}=${String(r.value)}`).sort(), [...keyed].sort(), 'keys and values');
  t.same(records.find((r) => r.key === 'b')?.value, { base64: Buffer.from([0xff])
    .toString('base64') }, 'bytes that are not UTF-8 come as base64');
  const partitionOfKey = new Map<string, Set<number>>();
  for (const r of records) {
    partitionOfKey.set(r.key, (partitionOfKey.get(r.key) ?? new Set()).add(r.partition));
  }
  t.ok([...partitionOfKey.values()].every((set) => set.size === 1), 'a key, one partition');
  t.ok(records.every((r) => r.topic === 'keyed' && Array.isArray(r.headers) &&
    r.timestamp > 0), 'topic, headers and timestamp on every record');
  const text = await pmq(['consume', 'keyed', '--partition', String(records[0]!.partition),
    '--max', '1', '--print-keys', ...CLIENT]);
  t.match(text.stdout, /^k\d\tv=\d+\n$|^b\t/, 'text with --print-keys: key<TAB>value');
});

t.test('a consumer group resumes where it committed', async (t) => {
  const first = await pmq(['consume', 't', '--group', 'g', '--max', '1000', ...CLIENT]);
  t.equal(first.code, 0, first.stderr);
  const rest = await pmq(['consume', 't', '--group', 'g', '--timeout-ms', '1500', ...CLIENT]);
  t.equal(rest.code, 0, rest.stderr);
  t.match(rest.stderr, /no record for 1500 ms/);
  t.same([...lines(first.stdout), ...lines(rest.stdout)].sort(), [...input].sort(),
    'the two runs together read every record once');
});

t.test('topic list and describe show the topics', async (t) => {
  const list = await pmq(['topic', 'list', '--json', ...CLIENT]);
  t.same(JSON.parse(list.stdout), [{ topic: 'keyed', partitions: 4 },
    { topic: 't', partitions: 3 }]);
  const describe = await pmq(['topic', 'describe', 't', '--json', ...CLIENT]);
  const description = JSON.parse(describe.stdout) as
    { partitions: { highWatermark: number; segments: number }[] };
  t.equal(description.partitions.length, 3);
  t.equal(description.partitions.reduce((sum, p) => sum + p.highWatermark, 0), 3000);
  t.ok(description.partitions.every((p) => p.segments >= 1), 'every partition has a segment');
  const text = await pmq(['topic', 'describe', 't', ...CLIENT]);
  t.match(text.stdout,
    /PARTITION\s+LOG-START\s+HIGH-WATERMARK\s+BYTES\s+SEGMENTS\n0\s+0\s+\d+\s+\d+\s+1\n/);
  t.match(text.stdout,
    /configs: retention\.ms=604800000 \(default\), retention\.bytes=-1 \(default\)/);
  const altered = await pmq(['topic', 'alter-config', 't', '--config', 'retention.ms=-1',
    '--config', 'retention.bytes=1073741824', ...CLIENT]);
  t.equal(altered.code, 0, altered.stderr);
  t.match((await pmq(['topic', 'describe', 't', ...CLIENT])).stdout,
    /configs: retention\.ms=-1, retention\.bytes=1073741824\n/, 'alter-config is described');
  const bad = await pmq(['topic', 'alter-config', 't', '--config', 'retention.days=1', ...CLIENT]);
  t.equal(bad.code, 1);
  t.match(bad.stderr, /unknown topic config "retention\.days"/);
});

t.test('wrong flags and unknown topics give clear errors', async (t) => {
  const cases: [string[], RegExp][] = [
    [['consume', 't', '--bogus'], /unknown option '--bogus'/],
    [['produce'], /name the topic: pmq … TOPIC, or -t TOPIC \[PMQ_ERR_ARGUMENT\]/],
    [['topic', 'create', 'x', '--partitions', 'zero'], /--partitions must be an integer/],
    [['topic', 'create', 'x', '--partitions', '0'], /--partitions must be an integer in 1\.\./],
    [['consume', 't', '--from', 'yesterday'], /must be earliest, latest, an offset N, -N/],
    [['consume', 'nope', '--max', '1', ...CLIENT],
      /topic nope does not exist: create it \(pmq topic create nope/],
    [['produce', 'nope', '--value', 'x', ...CLIENT], /PMQ_ERR_UNKNOWN_TOPIC/],
    [['produce', 't', '--partition', '9', '--value', 'x', ...CLIENT], /has no partition 9/],
    [['inspect', regionPath], /PMQ_ERR_REGION_LOCKED/],
  ];
  for (const [args, expected] of cases) {
    const run = await pmq(args);
    t.equal(run.code, 1, `exit 1: pmq ${args.join(' ')}`);
    t.match(run.stderr, expected);
    t.equal(run.stdout, '', 'nothing on stdout');
  }
});

interface Batch { kind: string; segmentIndex: number; address: number; sizeBytes: number }

t.test('inspect a stopped node\'s region, then a corrupted copy', async (t) => {
  dev!.kill('SIGINT');
  t.equal(await exitOf(dev!), 0, 'pmq dev stops cleanly');
  const text = await pmq(['inspect', regionPath]);
  t.equal(text.code, 0, text.stderr);
  t.match(text.stdout, /segment \d+ \(t\/0 chain 0\): active/);
  t.match(text.stdout, /every CRC and structure check passed/);
  const json = await pmq(['inspect', regionPath, '--json']);
  const objects = lines(json.stdout).map((line) => JSON.parse(line) as Batch &
    { ok?: boolean; records?: number; topic?: string });
  const summary = objects.at(-1)!;
  // The metadata log's segments (topic __pmq_meta) hold one record per metadata value.
  const metaSegments = new Set(objects.filter((o) => o.kind === 'segment' &&
    o.topic === '__pmq_meta').map((o) => o.segmentIndex));
  const metaRecords = objects.filter((o) => o.kind === 'batch' &&
    metaSegments.has(o.segmentIndex)).length;
  t.ok(metaRecords >= 1, `${metaRecords} metadata values`);
  t.same([summary.kind, summary.ok, summary.records], ['summary', true, 3201 + metaRecords]);
  const batch = objects.find((o) => o.kind === 'batch' && o.sizeBytes > 100)!;
  t.ok(batch, 'a batch to damage');

  const copy = join(dir, 'copy.region');
  copyFileSync(regionPath, copy);
  const fd = openSync(copy, 'r+');
  const byte = Buffer.alloc(1);
  readSync(fd, byte, 0, 1, batch.address + 70);  // inside the records, under the CRC
  byte[0] = byte[0]! ^ 0x10;
  writeSync(fd, byte, 0, 1, batch.address + 70);
  closeSync(fd);
  const damaged = await pmq(['inspect', copy]);
  t.equal(damaged.code, 1, 'exit 1 on a damaged batch');
  t.match(damaged.stderr, new RegExp(`1 problem\\(s\\), the first in segment ` +
    `${batch.segmentIndex} \\(.*\\) at position \\d+: PMQ_ERR_BATCH_CRC`));
  t.match(damaged.stdout, /FAILED at position \d+ \(address \d+\): PMQ_ERR_BATCH_CRC/);
  t.equal((await pmq(['inspect', regionPath])).code, 0, 'the original is untouched');
});
