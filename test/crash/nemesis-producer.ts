/**
 * A nemesis producer process (test/crash/nemesis.ts): sends single-record sends with unique
 * values ("<process>/<n>" padded) to `topic`, half to a partition it picks and half keyed (the
 * partitioner picks), up to `window` sends outstanding, and records every send in its history
 * file: send-invoke before the send, then send-ok / send-fail / send-info. A stdin line "stop"
 * ends the loop: outstanding sends settle (acknowledged or given up), the client closes, it
 * prints {"event":"done", ...} and exits 0. It may be SIGKILLed or SIGSTOPped at any moment.
 */
import { createInterface } from 'node:readline';

import { PmqError } from '../../clients/index.js';
import { prngFrom } from '../fixtures/record-batch-random.js';
import { connectRetrying, fileRecorder, sleep, type ProducerArgs } from './nemesis-common.js';

/** Errors that prove nothing was stored: refused by the client or before any lease. */
const DEFINITE = new Set(['PMQ_ERR_ARGUMENT', 'PMQ_ERR_UNKNOWN_TOPIC', 'PMQ_ERR_PARTITION_RANGE',
  'PMQ_ERR_RECORD_TOO_LARGE']);

const args = JSON.parse(process.argv[2]!) as ProducerArgs;
const history = fileRecorder(args.historyPath);
const prng = prngFrom(args.seed);
let stopping = false;
const input = createInterface({ input: process.stdin });
input.on('line', (line) => { if (line.includes('stop')) stopping = true; });

const client = await connectRetrying(args.broker, args.process, args.requestTimeoutMs);
const producer = client.producer(args.options);
const counts = { sent: 0, ok: 0, fail: 0, info: 0 };

async function sendOne(n: number): Promise<void> {
  const value = `${args.process}/${n}/`.padEnd(args.valueBytes, String.fromCharCode(97 + n % 26));
  const partition = prng.chance(0.5) ? prng.int(args.partitions) : null;
  const key = partition === null ? value : null;
  history.record(args.process, { kind: 'send-invoke', topic: args.topic, partition, key, value });
  counts.sent += 1;
  try {
    const [meta] = await producer.send({ topic: args.topic, ...(partition === null ? {} :
      { partition }), records: [{ key, value }] });
    history.record(args.process, { kind: 'send-ok', value, topic: meta!.topic,
      partition: meta!.partition, offset: meta!.offset });
    counts.ok += 1;
  } catch (error) {
    const code = error instanceof PmqError ? error.code : String(error);
    const definite = DEFINITE.has(code);
    history.record(args.process, { kind: definite ? 'send-fail' : 'send-info', value,
      error: code });
    counts[definite ? 'fail' : 'info'] += 1;
  }
}

const inFlight = new Set<Promise<void>>();
for (let n = 0; !stopping; n += 1) {
  const sending = sendOne(n);
  inFlight.add(sending);
  void sending.finally(() => inFlight.delete(sending));
  if (inFlight.size >= args.window) await Promise.race(inFlight);
  await sleep(prng.int(args.pauseMsMax + 1));
}
// While settling, say what it waits for (a producer that never finishes is a finding).
let phase = 'sends';
const progress = setInterval(() => process.stdout.write(`${JSON.stringify({ event: 'waiting',
  phase, inFlight: inFlight.size, ...counts })}\n`), 5000);
await Promise.all(inFlight);
phase = 'producer.close';
await producer.close();
phase = 'client.close';
await client.close();
clearInterval(progress);
input.close();
process.stdin.destroy();
process.stdout.write(`${JSON.stringify({ event: 'done', ...counts })}\n`);
