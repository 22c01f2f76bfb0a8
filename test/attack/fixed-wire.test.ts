// Hostile fixed-layout frames (wire v8, docs/wire-protocol.md, "Control messages": the table of
// what a receiver does with a message that fails) at a real `pmq broker` and `pmq storage`
// (CLI processes on 127.0.0.1), from a raw transport that sees every answer: each case of the
// table, then random and mutated frames whose expected answer this process's own decoder
// predicts (answered `error` PMQ_ERR_PROTOCOL with the frame's id, served, ignored, or the
// connection closed). Afterwards both nodes are alive and serve a fresh client.
// PMQ_TEST_SEED replays the random part (the seed is printed).
import t from 'tap';

import { decodeFrame, encodeMessage, FRAME_HEADER, ProtocolError } from
  '../../common/wire/codec.js';
import {
  FIXED_LAYOUTS, FIXED_PREFIX_BYTES, FixedDecoder, FixedEncoder, fixedBytes, fixedFields,
  type FixedKind,
} from '../../common/wire/fixed.js';
import {
  ONE_WAY_KINDS, REPLY_KINDS, WIRE_VERSION, type Body, type Message, type MessageKind,
  type RequestKind,
} from '../../common/wire/messages.js';
import { MALFORMED_IN_A_ROW_MAX } from '../../rpc/control-channel.js';
import { Transport, type Endpoint } from '../../native/transport.js';
import { prngFrom, testSeed } from '../fixtures/record-batch-random.js';
import { startBroker, startStorage, stopProc, tempDir } from '../helpers/broker-cluster.js';

const SEED = testSeed();
const ROUNDS = Number(process.env.PMQ_FIXED_FUZZ_ROUNDS ?? 40);
t.comment(`seed ${SEED} (PMQ_TEST_SEED=${SEED} replays), ${ROUNDS} connections of random frames`);

const { dir, remove } = tempDir('pmq-fixed-attack-');
const storage = await startStorage(`${dir}/region-1`, 1);
const broker = await startBroker(`${dir}/data`, [storage]);
const transport = Transport.open({ transports: 'tcp', netDevices: 'lo' });
t.teardown(async () => {
  transport.close();
  await stopProc(broker);
  await stopProc(storage);
  remove();
});

/** Every message each endpoint received, decoded by format (undecodable: never, from a node). */
const inbox = new Map<Endpoint, Message[]>();
const closed = new Set<Endpoint>();
const decoder = new FixedDecoder();
transport.setMessageHandler({ deliver: (ep, header, payload) => {
  const message = header[3] === 1 ? { ...decoder.decode(header, payload) } as unknown as Message
    : decodeFrame(header, payload);
  inbox.get(ep)?.push(message);
} });
transport.on('closed', (ep) => { closed.add(ep); });
transport.on('error', (ep) => { closed.add(ep); });

async function until(what: string, done: () => boolean, ms = 15_000): Promise<void> {
  for (const start = Date.now(); !done(); await new Promise((r) => setTimeout(r, 5))) {
    if (Date.now() - start > ms) throw new Error(`waited ${ms} ms for ${what}`);
  }
}

let nextId = 1;
const answerTo = (ep: Endpoint, id: number): Message | undefined =>
  inbox.get(ep)!.find((m) => m.id === id);

async function open(port = broker.port): Promise<Endpoint> {
  const ep = await transport.connect('127.0.0.1', port);
  inbox.set(ep, []);
  return ep;
}

/** A msgpack request and its answer. */
async function ask<K extends RequestKind>(ep: Endpoint, kind: K, body: Body<K>):
  Promise<Message> {
  const id = nextId++;
  await transport.send(ep, FRAME_HEADER, encodeMessage(kind, id, body));
  await until(`${kind}'s answer`, () => answerTo(ep, id) !== undefined);
  return answerTo(ep, id)!;
}

const EMPTY = new Uint8Array(0);
const encoder = new FixedEncoder();
function frame(kind: FixedKind, body: object, id = nextId++): Uint8Array {
  const bytes = encoder.encode(kind, id, body);
  if (bytes === null) throw new Error(`${kind} does not encode`);
  return Uint8Array.from(bytes);
}
const idOf = (bytes: Uint8Array): number => new DataView(bytes.buffer, bytes.byteOffset)
  .getUint32(8, true);

async function sendFrame(ep: Endpoint, header: Uint8Array, payload: Uint8Array = EMPTY):
  Promise<void> {
  await transport.send(ep, header, payload).catch(() => undefined);
}

const setup = await open();
await ask(setup, 'hello', { clientId: 'fixed-attack', role: 'admin' });
await ask(setup, 'topicCreate', { configs: [], topic: 'fw', partitions: 1 });
const leased = await ask(setup, 'lease', { topic: 'fw', partition: 0, bytes: 4096,
  bytesMin: 68, releaseEpoch: 0, releaseId: -1 }) as Message<'leased'>;
const TOPIC_ID = leased.topicId;
const release = { topicId: TOPIC_ID, partition: 0, epoch: leased.epoch, leaseId: 999_999 };
const leaseBody = { topicId: TOPIC_ID, partition: 0, bytes: 4096, bytesMin: 68,
  releaseEpoch: 0, releaseId: -1 };

/** The answer to one frame on a fresh connection (after hello), or 'closed' / 'none'. */
async function answerOf(header: Uint8Array, payload: Uint8Array = EMPTY, port = broker.port):
  Promise<Message | 'closed' | 'none'> {
  const ep = await open(port);
  if (port === broker.port) await ask(ep, 'hello', { clientId: 'fixed-attack', role: 'admin' });
  const id = header.byteLength >= FIXED_PREFIX_BYTES ? idOf(header) : -1;
  await sendFrame(ep, header, payload);
  // A sentinel after it: answered in order, so a missing answer is missing.
  const sentinel = nextId++;
  await transport.send(ep, FRAME_HEADER, encodeMessage('hello', sentinel,
    { clientId: 'sentinel', role: 'admin' })).catch(() => undefined);
  await until('the answer or the close', () => closed.has(ep) || (answerTo(ep, id) !==
    undefined && answerTo(ep, sentinel) !== undefined) || answerTo(ep, sentinel) !== undefined);
  if (closed.has(ep)) return 'closed';
  await new Promise((r) => setTimeout(r, 50));
  const answer = answerTo(ep, id);
  await transport.closeEndpoint(ep).catch(() => undefined);
  return answer ?? 'none';
}

function isProtocolError(answer: Message | 'closed' | 'none', id: number): boolean {
  return typeof answer === 'object' && answer.kind === 'error' && answer.id === id &&
    answer.code === 'PMQ_ERR_PROTOCOL';
}

t.test('each row of the table, fixed layout', async (t) => {
  const good = frame('lease', leaseBody);
  const served = await answerOf(good);
  t.match(served, { kind: 'leased', id: idOf(good), topicId: TOPIC_ID }, 'a good lease: leased');
  const unknown = frame('lease', { ...leaseBody, topicId: TOPIC_ID + 1000 });
  t.match(await answerOf(unknown), { kind: 'error', id: idOf(unknown),
    code: 'PMQ_ERR_UNKNOWN_TOPIC' }, 'an unknown topic id: PMQ_ERR_UNKNOWN_TOPIC');

  const spoilt = (what: string, edit: (bytes: Uint8Array) => Uint8Array, kind: FixedKind =
    'leaseRelease', body: object = release): [string, Uint8Array] => {
    const bytes = frame(kind, body);
    return [what, edit(bytes)];
  };
  const set = (at: number, value: number) => (bytes: Uint8Array): Uint8Array => {
    bytes[at] = value;
    return bytes;
  };
  const epochHigh = fixedFields('leaseRelease').find((f) => f.name === 'epoch')!.offset + 4;
  const answered: [string, Uint8Array, Uint8Array?][] = [
    spoilt('another version', set(2, WIRE_VERSION - 1)),
    spoilt('version 255', set(2, 255)),
    spoilt('kind 0', set(4, 0)),
    spoilt('kind 9', set(4, 9)),
    spoilt('kind 255', set(4, 255)),
    spoilt('a reserved byte', set(7, 1)),
    spoilt('one byte short', (b) => b.subarray(0, b.byteLength - 1)),
    spoilt('one byte long', (b) => Uint8Array.of(...b, 0)),
    spoilt('the prefix only', (b) => b.subarray(0, FIXED_PREFIX_BYTES)),
    spoilt('a u64 of 2^53', set(epochHigh + 2, 0x20)),
    spoilt('a u64 above 2^63', set(epochHigh + 3, 0x80)),
    spoilt('an append of a lease\'s length', set(4, FIXED_LAYOUTS.append.code)),
    spoilt('an i64 below -(2^53)', set(fixedFields('append').find((f) =>
      f.name === 'sequence')!.offset + 7, 0x80), 'append', { topicId: TOPIC_ID, partition: 0,
      epoch: 1, leaseId: 1, position: 0, bytes: 68, records: 1, producerId: -1, sequence: -1 }),
    spoilt('a watermark push to the broker', (b) => b, 'watermark', { subscription: 1,
      epoch: 1, chainPosition: 0, position: 0, offsetLast: -1, sealed: false,
      highWatermark: 0 }),
  ];
  for (const [what, header] of answered) {
    const answer = await answerOf(header);
    t.ok(isProtocolError(answer, idOf(header)), `${what}: error PMQ_ERR_PROTOCOL with its id`,
      { answer });
  }
  const withPayload = frame('leaseRelease', release);
  t.ok(isProtocolError(await answerOf(withPayload, Uint8Array.of(1, 2, 3)),
    idOf(withPayload)), 'a payload: PMQ_ERR_PROTOCOL');

  const acked = frame('acked', { baseOffset: 1, leaseEnd: true });
  t.equal(await answerOf(acked), 'none', 'a reply nobody asked for: ignored');
  const badBool = frame('acked', { baseOffset: 1, leaseEnd: true });
  badBool[fixedBytes('acked') - 1] = 2;
  t.equal(await answerOf(badBool), 'none', 'a malformed reply nobody asked for: nothing to fail');

  const good2 = frame('leaseRelease', release);
  t.equal(await answerOf(good2.subarray(0, FIXED_PREFIX_BYTES - 1)), 'closed', 'no id: closed');
  t.equal(await answerOf(set(0, 0x51)(Uint8Array.from(good2))), 'closed', 'bad magic: closed');
  t.equal(await answerOf(Uint8Array.of(0x50, 0x51, WIRE_VERSION, 2)), 'closed',
    'format 2: closed');
  t.equal(await answerOf(Uint8Array.of(0x50, 0x51, WIRE_VERSION, 1)), 'closed',
    'a fixed frame of 4 bytes: closed');

  const toStorage = frame('leaseRelease', release);
  t.ok(isProtocolError(await answerOf(toStorage, EMPTY, storage.port), idOf(toStorage)),
    'a fixed request to a storage node (it serves none): PMQ_ERR_PROTOCOL');
});

t.test(`${MALFORMED_IN_A_ROW_MAX} malformed fixed frames in a row are answered, one more closes`,
  async (t) => {
    const run = async (counts: number[]): Promise<{ answered: number; open: boolean }> => {
      const ep = await open();
      await ask(ep, 'hello', { clientId: 'fixed-attack', role: 'admin' });
      const ids: number[] = [];
      for (const [index, count] of counts.entries()) {
        if (index > 0) {
          const good = frame('leaseRelease', release);
          await sendFrame(ep, good);
          await until('done', () => answerTo(ep, idOf(good)) !== undefined || closed.has(ep));
        }
        for (let i = 0; i < count; i += 1) {
          const bad = frame('leaseRelease', release);
          bad[4] = 200;
          ids.push(idOf(bad));
          await sendFrame(ep, bad);
        }
      }
      await until('answers or the close', () => closed.has(ep) ||
        ids.every((id) => answerTo(ep, id) !== undefined));
      await new Promise((r) => setTimeout(r, 100));
      const answered = ids.filter((id) => isProtocolError(answerTo(ep, id) ?? 'none', id))
        .length;
      const stillOpen = !closed.has(ep);
      if (stillOpen) await transport.closeEndpoint(ep).catch(() => undefined);
      return { answered, open: stillOpen };
    };
    t.same(await run([MALFORMED_IN_A_ROW_MAX]), { answered: MALFORMED_IN_A_ROW_MAX,
      open: true }, `${MALFORMED_IN_A_ROW_MAX}: all answered, open`);
    t.same(await run([MALFORMED_IN_A_ROW_MAX, MALFORMED_IN_A_ROW_MAX]),
      { answered: 2 * MALFORMED_IN_A_ROW_MAX, open: true }, 'a good fixed request resets');
    t.same(await run([MALFORMED_IN_A_ROW_MAX + 1]), { answered: MALFORMED_IN_A_ROW_MAX,
      open: false }, `${MALFORMED_IN_A_ROW_MAX + 1}: closed`);
  });

/** What the broker must do with `header`, by this process's decoder (the same rules). */
function expected(header: Uint8Array, payload: Uint8Array):
  { answer: 'protocol' | 'served' | 'none' | 'closed'; id: number } {
  try {
    // A frame whose format byte is no longer 1 is a msgpack frame (then a bad one).
    const message = header.byteLength >= 4 && header[3] === 1
      ? new FixedDecoder().decode(header, payload) : decodeFrame(header, payload);
    const kind = message.kind as MessageKind;
    if (ONE_WAY_KINDS.has(kind)) return { answer: 'protocol', id: message.id };
    return { answer: REPLY_KINDS.has(kind) ? 'none' : 'served', id: message.id };
  } catch (error) {
    if (!(error instanceof ProtocolError)) throw error;
    if (error.replyTo === null) return { answer: 'closed', id: -1 };
    const kind = error.replyTo.kind as MessageKind | null;
    return { answer: kind !== null && REPLY_KINDS.has(kind) ? 'none' : 'protocol',
      id: error.replyTo.id };
  }
}

t.test('random and mutated fixed frames are answered per the table', async (t) => {
  const prng = prngFrom(SEED);
  const kinds = Object.keys(FIXED_LAYOUTS) as FixedKind[];
  const counts = { protocol: 0, served: 0, none: 0, closed: 0 };
  for (let round = 0; round < ROUNDS; round += 1) {
    const ep = await open();
    await ask(ep, 'hello', { clientId: 'fixed-fuzz', role: 'producer' });
    const frames: { header: Uint8Array; payload: Uint8Array }[] = [];
    // At most 10 per connection (below the malformed-in-a-row limit), unanswerable ones last.
    for (let i = 0; i < 10; i += 1) {
      const kind = kinds[prng.int(kinds.length)]!;
      const body: Record<string, unknown> = {};
      for (const { name, type } of fixedFields(kind)) {
        if (name === 'topicId') body[name] = prng.chance(0.2) ? TOPIC_ID : prng.int(2 ** 32);
        else if (type === 'bool') body[name] = prng.chance(0.5);
        else if (type === 'u32') body[name] = prng.chance(0.8) ? prng.int(3) : prng.int(2 ** 32);
        else body[name] = prng.chance(0.7) ? prng.int(70_000) : 2 ** 53 - 1 - prng.int(9);
      }
      let header: Uint8Array = frame(kind, body);
      const roll = prng.int(100);
      if (roll < 30) {
        for (let n = 1 + prng.int(3); n > 0; n -= 1) {
          header[prng.int(header.byteLength)] = prng.int(256);
        }
      } else if (roll < 40) {
        header = header.subarray(0, prng.int(header.byteLength));
      } else if (roll < 50) {
        header = Uint8Array.of(...header, ...prng.bytes(1 + prng.int(8)));
      } else if (roll < 60) {
        header = Uint8Array.of(0x50, 0x51, WIRE_VERSION, 1, ...prng.bytes(prng.int(90)));
      }
      const payload = prng.chance(0.05) ? prng.bytes(1 + prng.int(16)) : EMPTY;
      // A spoilt id may equal another frame's: its answer would be ambiguous, so not sent.
      const { id } = expected(header, payload);
      if (id < 0 || !frames.some((f) => expected(f.header, f.payload).id === id)) {
        frames.push({ header, payload });
      }
    }
    frames.sort((a, b) => Number(expected(a.header, a.payload).answer === 'closed') -
      Number(expected(b.header, b.payload).answer === 'closed'));
    // The first unanswerable frame goes last, once every answer before it is in (a reply
    // still being made when the node closes the connection has nowhere to go).
    const last = frames.findIndex((f) => expected(f.header, f.payload).answer === 'closed');
    const sent = last < 0 ? frames : frames.slice(0, last + 1);
    const closer = last < 0 ? undefined : sent[last]!;
    for (const { header, payload } of closer === undefined ? sent : sent.slice(0, -1)) {
      await sendFrame(ep, header, payload);
    }
    const sentinel = nextId++;
    await transport.send(ep, FRAME_HEADER, encodeMessage('hello', sentinel,
      { clientId: 'sentinel', role: 'producer' })).catch(() => undefined);
    const expectations = sent.map((f) => expected(f.header, f.payload));
    const servedDone = (): boolean => expectations.every((e) => e.answer !== 'served' ||
      answerTo(ep, e.id) !== undefined);
    await until('the answers', () => closed.has(ep) ||
      (answerTo(ep, sentinel) !== undefined && servedDone()));
    await new Promise((r) => setTimeout(r, 30));
    if (closed.has(ep)) {
      t.fail(`round ${round}: closed before its unanswerable frame`,
        { stderr: broker.stderr?.().slice(-2000) });
      continue;
    }
    if (closer !== undefined) {
      await sendFrame(ep, closer.header, closer.payload);
      await until('the close', () => closed.has(ep));
    }
    for (const [index, e] of expectations.entries()) {
      counts[e.answer] += 1;
      const answer = answerTo(ep, e.id);
      const hex = Buffer.from(sent[index]!.header).toString('hex');
      if (e.answer === 'closed') {
        t.ok(closed.has(ep), `round ${round}: ${hex} closes the connection`);
      } else if (e.answer === 'protocol') {
        t.ok(isProtocolError(answer ?? 'none', e.id), `round ${round}: ${hex} answered ` +
          'PMQ_ERR_PROTOCOL', { answer });
      } else if (e.answer === 'served') {
        t.ok(answer !== undefined && answer.id === e.id, `round ${round}: ${hex} answered`,
          { answer });
      } else {
        t.equal(answer, undefined, `round ${round}: ${hex} not answered (a reply)`);
      }
    }
    if (!closed.has(ep)) await transport.closeEndpoint(ep).catch(() => undefined);
  }
  t.comment(`expected answers: ${JSON.stringify(counts)}`);
  t.ok(counts.protocol > 0 && counts.served > 0 && counts.closed > 0, 'every grade was drawn');
});

t.test('both nodes alive and serving afterwards', async (t) => {
  t.equal(broker.child.exitCode, null, 'broker running');
  t.equal(storage.child.exitCode, null, 'storage running');
  t.notMatch(broker.stderr?.() ?? '', /invariant|Uncaught|FATAL|abort/i, 'no abort');
  const ep = await open();
  await ask(ep, 'hello', { clientId: 'after', role: 'producer' });
  const good = frame('lease', leaseBody);
  await sendFrame(ep, good);
  await until('leased', () => answerTo(ep, idOf(good)) !== undefined);
  t.match(answerTo(ep, idOf(good)), { kind: 'leased', topicId: TOPIC_ID });
});
