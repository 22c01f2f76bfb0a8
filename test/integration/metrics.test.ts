// `--metrics-listen` on `pmq storage` and `pmq broker` (issue 13; docs/metrics.md): real
// processes on 127.0.0.1 with their metrics on free ports, a short produce and a group's
// consume through the client library, then GET /metrics over HTTP: every family docs/metrics.md
// lists is there with its type, and the counters moved (records and bytes produced, consumed
// by the group, appends and their latency, persists, grants, reads and writes served, an error
// by its code); the lag is 0 once the group committed everything; other paths are 404.
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';

import t from 'tap';

import { connect } from '../../clients/index.js';
import { startBroker, startStorage, stopProc, tempDir, type Proc } from
  '../helpers/broker-cluster.js';

const DOCS = readFileSync(new URL('../../docs/metrics.md', import.meta.url), 'utf8');

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

async function scrape(port: number, path = '/metrics'): Promise<{ status: number;
  text: string }> {
  const response = await fetch(`http://127.0.0.1:${port}${path}`);
  return { status: response.status, text: await response.text() };
}

/** The value of one sample, e.g. `pmq_produce_records_total{topic="t"}`; null when absent. */
function sample(text: string, name: string, labels: Record<string, string> = {}):
  number | null {
  for (const line of text.split('\n')) {
    if (!line.startsWith(name) || line.startsWith('#')) continue;
    const match = /^([a-z_]+)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (match === null || match[1] !== name) continue;
    const have = Object.fromEntries([...(match[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)]
      .map((m) => [m[1]!, m[2]!]));
    if (Object.entries(labels).every(([key, value]) => have[key] === value)) {
      return Number(match[3]);
    }
  }
  return null;
}

/** Families docs/metrics.md lists for a role: `| `name` | type | ...` rows under its heading. */
function documentedFamilies(role: 'Broker' | 'Storage node'): [string, string][] {
  const start = DOCS.indexOf(`## ${role}`);
  const end = DOCS.indexOf('\n## ', start + 1);
  const section = DOCS.slice(start, end === -1 ? undefined : end);
  return [...section.matchAll(/^\| `(pmq_[a-z_]+)` \| (counter|gauge|histogram) \|/gm)]
    .map((m) => [m[1]!, m[2]!]);
}

const { dir, remove } = tempDir('pmq-metrics-');
const nodes: Proc[] = [];
t.teardown(async () => {
  for (const node of nodes.reverse()) await stopProc(node);
  remove();
});

t.test('broker and storage node serve /metrics; the counters move', async (t) => {
  const [storagePort, brokerPort] = [await freePort(), await freePort()];
  const storage = await startStorage(join(dir, 'region'), 0, 0,
    ['--metrics-listen', `127.0.0.1:${storagePort}`]);
  nodes.push(storage);
  const broker = await startBroker(join(dir, 'broker'), [storage],
    ['--metrics-listen', `127.0.0.1:${brokerPort}`]);
  nodes.push(broker);

  const before = await scrape(brokerPort);
  t.equal(before.status, 200);
  t.equal(sample(before.text, 'pmq_produce_records_total', { topic: 't' }), null,
    'nothing produced yet');

  const client = await connect({ brokers: [`${broker.host}:${broker.port}`],
    transports: 'tcp', netDevices: 'lo' });
  t.teardown(() => client.close());
  await client.admin().createTopic('t', { partitions: 2 });
  await t.rejects(client.admin().createTopic('t', { partitions: 2 }), { code:
    'PMQ_ERR_TOPIC_EXISTS' }, 'an error reply, counted by its code');
  const producer = client.producer();
  const values = Array.from({ length: 200 }, (_, i) => `value-${i}`);
  for (const partition of [0, 1]) {
    await producer.send({ topic: 't', partition, records: values.slice(partition * 100,
      partition * 100 + 100).map((value) => ({ value })) });
  }
  await producer.flush();
  const consumer = client.consumer({ groupId: 'g', fromBeginning: true });
  await consumer.subscribe('t');
  let consumed = 0;
  for await (const record of consumer) {
    t.ok(record.value !== null);
    consumed += 1;
    if (consumed === values.length) break;
  }
  await consumer.commit();

  const b = (await scrape(brokerPort)).text;
  if (process.env.PMQ_METRICS_DUMP === '1') process.stderr.write(b);
  for (const [family, type] of documentedFamilies('Broker')) {
    t.match(b, new RegExp(`^# TYPE ${family} ${type}$`, 'm'), `broker: ${family} ${type}`);
  }
  t.equal(sample(b, 'pmq_produce_records_total', { topic: 't' }), 200);
  t.ok(sample(b, 'pmq_produce_bytes_total', { topic: 't' })! > 200 * 7, 'bytes produced');
  t.equal(sample(b, 'pmq_consume_records_total', { topic: 't' }), 200, 'consumed by groups');
  t.ok(sample(b, 'pmq_broker_requests_total', { kind: 'append' })! >= 2, 'appends counted');
  t.ok(sample(b, 'pmq_broker_request_duration_seconds_count', { kind: 'append' })! >= 2);
  t.equal(sample(b, 'pmq_broker_request_duration_seconds_bucket', { kind: 'append',
    le: '+Inf' }), sample(b, 'pmq_broker_request_duration_seconds_count', { kind: 'append' }));
  t.ok(sample(b, 'pmq_broker_persist_duration_seconds_count')! >= 2, 'persists timed');
  t.equal(sample(b, 'pmq_broker_errors_total', { code: 'PMQ_ERR_TOPIC_EXISTS' }), 1);
  for (const partition of ['0', '1']) {
    t.equal(sample(b, 'pmq_partition_high_watermark', { topic: 't', partition }), 100);
    t.equal(sample(b, 'pmq_group_committed_offset', { group: 'g', topic: 't', partition }),
      100);
    t.equal(sample(b, 'pmq_group_lag', { group: 'g', topic: 't', partition }), 0);
  }
  t.ok(sample(b, 'pmq_broker_epoch')! >= 1);
  t.ok(sample(b, 'pmq_broker_connections')! >= 2, 'the client and the storage node');

  const s = (await scrape(storagePort)).text;
  if (process.env.PMQ_METRICS_DUMP === '1') process.stderr.write(s);
  for (const [family, type] of documentedFamilies('Storage node')) {
    t.match(s, new RegExp(`^# TYPE ${family} ${type}$`, 'm'), `storage: ${family} ${type}`);
  }
  t.ok(sample(s, 'pmq_storage_write_bytes_total')! > 200 * 7, 'producers\' writes served');
  t.ok(sample(s, 'pmq_storage_writes_total')! >= 2);
  t.ok(sample(s, 'pmq_storage_read_bytes_total')! > 200 * 7, 'consumers\' reads served');
  t.ok(sample(s, 'pmq_storage_grants_issued_total')! >= 4, 'write and read grants');
  t.equal(sample(s, 'pmq_storage_grants_issued_total')! -
    sample(s, 'pmq_storage_grants_revoked_total')!, sample(s, 'pmq_storage_grants_active'));
  t.ok(sample(s, 'pmq_storage_segments', { state: 'active' })! >= 2, 'a segment a partition');
  t.equal(sample(s, 'pmq_storage_region_bytes', { kind: 'size' }), 4 * 1024 * 1024);
  t.ok(sample(s, 'pmq_storage_region_bytes', { kind: 'used' })! > 0);
  t.ok(sample(s, 'pmq_storage_requests_total', { kind: 'grantCreate' })! >= 2);
  t.ok(sample(s, 'pmq_storage_epoch')! >= 1);
  t.ok(sample(s, 'pmq_storage_connections')! >= 2, 'the broker and the client');

  t.equal((await scrape(brokerPort, '/')).status, 404, 'only /metrics is served');
  t.equal((await scrape(storagePort, '/metrics/x')).status, 404);
});

t.test('an address in use is refused before the node starts', async (t) => {
  const holder = createServer();
  await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => holder.close(() => resolve())));
  const { port } = holder.address() as { port: number };
  await t.rejects(startStorage(join(dir, 'region-2'), 1, 0,
    ['--metrics-listen', `127.0.0.1:${port}`]), /address in use/);
});
