/**
 * One side's clients in a split-brain round (split-brain.ts), in one OS process, all through the
 * public client library against the one broker it was told: a producer (`<side>-producer`:
 * idempotent, acks all, single-record sends with unique values, two outstanding), a group
 * consumer (`<side>-consumer`, group `groupId`: polls every partition of `topic` from the
 * group's committed offset and commits its positions per partition every `commitEveryMs`, one
 * commit at a time, offsets that never go down: the committer of history.ts's workload rule),
 * and a topic creator (`<side>-creator`: creates `<side>-t<n>` with one partition every
 * 150..300 ms). The consumer records the committed offsets it starts from (`commit-read`): a
 * worker that replaces one whose broker died continues its group on the current broker. Every
 * step is recorded in the history file before the process acts on it.
 *
 * A stdin line "stop" ends the loops: outstanding sends and the commit in flight settle, the
 * client closes, it prints {"event":"done", ...} and exits 0. It may be SIGKILLed at any moment
 * (its broker died or was fenced: what it had in flight is then indeterminate).
 */
import { createInterface } from 'node:readline';

import { PmqError, type Client, type Consumer } from '../../clients/index.js';
import { prngFrom } from '../fixtures/record-batch-random.js';
import { connectRetrying, fileRecorder, retrying, sleep } from './nemesis-common.js';

interface Args {
  broker: string;
  side: string;
  topic: string;
  partitions: number;
  groupId: string;
  historyPath: string;
  seed: number;
  requestTimeoutMs: number;
  commitEveryMs: number;
}

/** Errors that prove a send stored nothing (refused by the client or before a reservation).
 *  PMQ_ERR_FENCED is not among them: the producer retries, and an earlier attempt may be
 *  durable. */
const SEND_DEFINITE = new Set(['PMQ_ERR_ARGUMENT', 'PMQ_ERR_UNKNOWN_TOPIC',
  'PMQ_ERR_PARTITION_RANGE', 'PMQ_ERR_RECORD_TOO_LARGE']);
/** Commits and creates are one request each, never retried by the client; a fenced broker
 *  answers PMQ_ERR_FENCED only for what it has not done (docs/clients.md, FencedError). */
const METADATA_DEFINITE = new Set(['PMQ_ERR_ARGUMENT', 'PMQ_ERR_UNKNOWN_TOPIC',
  'PMQ_ERR_PARTITION_RANGE', 'PMQ_ERR_DENIED', 'PMQ_ERR_LIMIT', 'PMQ_ERR_TOPIC_QUARANTINED',
  'PMQ_ERR_FENCED']);

const args = JSON.parse(process.argv[2]!) as Args;
const history = fileRecorder(args.historyPath);
const prng = prngFrom(args.seed);
const codeOf = (error: unknown): string => (error instanceof PmqError ? error.code :
  String(error));
let stopping = false;
const input = createInterface({ input: process.stdin });
input.on('line', (line) => { if (line.includes('stop')) stopping = true; });
const counts = { sent: 0, ok: 0, fail: 0, info: 0, commits: 0, commitsOk: 0, creates: 0,
  createsOk: 0, polled: 0 };

async function sendOne(producer: ReturnType<Client['producer']>, n: number): Promise<void> {
  const name = `${args.side}-producer`;
  const value = `${name}/${n}/`.padEnd(40, String.fromCharCode(97 + n % 26));
  const partition = prng.int(args.partitions);
  history.record(name, { kind: 'send-invoke', topic: args.topic, partition, key: null, value });
  counts.sent += 1;
  try {
    const [meta] = await producer.send({ topic: args.topic, partition,
      records: [{ key: null, value }] });
    history.record(name, { kind: 'send-ok', value, topic: meta!.topic,
      partition: meta!.partition, offset: meta!.offset });
    counts.ok += 1;
  } catch (error) {
    const definite = SEND_DEFINITE.has(codeOf(error));
    history.record(name, { kind: definite ? 'send-fail' : 'send-info', value,
      error: codeOf(error) });
    counts[definite ? 'fail' : 'info'] += 1;
    await sleep(100);   // a broker that is away: do not spin
  }
}

async function produce(client: Client): Promise<void> {
  const producer = client.producer({ maxInFlightBatches: 1, lingerMs: 2, retries: 8,
    retryBackoffMs: 50 });
  const inFlight = new Set<Promise<void>>();
  for (let n = 0; !stopping; n += 1) {
    const sending = sendOne(producer, n);
    inFlight.add(sending);
    void sending.finally(() => inFlight.delete(sending));
    if (inFlight.size >= 2) await Promise.race(inFlight);
    await sleep(prng.int(16));
  }
  await Promise.all(inFlight);
  await producer.close();
}

async function createTopics(client: Client): Promise<void> {
  const name = `${args.side}-creator`;
  const admin = client.admin();
  for (let n = 0; !stopping; n += 1) {
    const topic = `${args.side}-t${n}`;
    history.record(name, { kind: 'create-invoke', topic, partitions: 1 });
    counts.creates += 1;
    try {
      await admin.createTopic(topic, { partitions: 1 });
      history.record(name, { kind: 'create-ok', topic });
      counts.createsOk += 1;
    } catch (error) {
      history.record(name, { kind: METADATA_DEFINITE.has(codeOf(error)) ? 'create-fail' :
        'create-info', topic, error: codeOf(error) });
    }
    await sleep(150 + prng.int(150));
  }
}

/** Commits each partition's position when it moved past the last commit, one at a time. */
async function commitPositions(consumer: Consumer, last: Map<number, number>): Promise<void> {
  const name = `${args.side}-consumer`;
  for (const { topic, partition, offset } of consumer.positions()) {
    if (offset <= (last.get(partition) ?? 0)) continue;
    const key = { group: args.groupId, topic, partition, offset };
    history.record(name, { kind: 'commit-invoke', ...key });
    counts.commits += 1;
    try {
      await consumer.commit([{ topic, partition, offset }]);
      history.record(name, { kind: 'commit-ok', ...key });
      counts.commitsOk += 1;
    } catch (error) {
      history.record(name, { kind: METADATA_DEFINITE.has(codeOf(error)) ? 'commit-fail' :
        'commit-info', ...key, error: codeOf(error) });
    }
    last.set(partition, offset);   // never commit lower, whatever the outcome
  }
}

async function consume(client: Client): Promise<void> {
  const name = `${args.side}-consumer`;
  const topic = args.topic;
  const consumer = client.consumer({ groupId: args.groupId, start: 'earliest', maxWaitMs: 200 });
  const partitions = Array.from({ length: args.partitions }, (_, partition) => partition);
  const starts = await retrying(() => Promise.all(partitions.map((partition) =>
    consumer.committed(topic, partition))));
  await retrying(() => consumer.assign(partitions.map((partition) => ({ topic, partition }))));
  const last = new Map<number, number>();
  for (const partition of partitions) {
    const committed = starts[partition]!;
    history.record(name, { kind: 'commit-read', group: args.groupId, topic, partition,
      offset: committed < 0 ? null : committed });
    const offset = Math.max(0, committed);
    if (offset > 0) consumer.seek(topic, partition, offset);
    last.set(partition, offset);
    history.record(name, { kind: 'assign', topic, partition, offset });
  }
  const committing = (async (): Promise<void> => {
    while (!stopping) {
      await sleep(args.commitEveryMs);
      await commitPositions(consumer, last);
    }
  })();
  const text = new TextDecoder();
  const batches = consumer.batches()[Symbol.asyncIterator]();
  // One next() at a time: a second call while one is pending would take a batch unrecorded.
  let pending = batches.next();
  while (!stopping) {
    const next = await Promise.race([pending, sleep(250).then(() => 'idle' as const)]);
    if (next === 'idle') continue;
    if (next.done === true) break;
    pending = batches.next();
    history.record(name, { kind: 'poll', topic, partition: next.value.partition,
      records: next.value.records.map((record) => ({ offset: record.offset,
        value: record.value === null ? '' : text.decode(record.value) })) });
    counts.polled += next.value.records.length;
  }
  await committing;
  await consumer.close();
}

const client = await connectRetrying(args.broker, `${args.side}-worker`, args.requestTimeoutMs);
process.stdout.write(`${JSON.stringify({ event: 'ready' })}\n`);
const roles = [produce(client), consume(client), createTopics(client)];
const settled = await Promise.allSettled(roles);
const errors = settled.flatMap((s) => (s.status === 'rejected' ? [codeOf(s.reason)] : []));
await client.close();
input.close();
process.stdin.destroy();
process.stdout.write(`${JSON.stringify({ event: 'done', errors, ...counts })}\n`);
