// Every wire message round-trips through the codec; the decoder refuses everything else.
import { Packr } from 'msgpackr';
import t from 'tap';

import {
  checkFrameHeader, decodeMessage, encodeMessage, FRAME_HEADER,
} from '../../common/wire/codec.js';
import { MESSAGES, WIRE_VERSION, type MessageKind, type Body } from '../../common/wire/messages.js';
import type { Field, Schema } from '../../common/wire/schema.js';

function sampleOf(field: Field, seed: number): unknown {
  if (typeof field === 'string') {
    switch (field) {
      case 'uint': return seed * 7919;
      case 'int': return seed % 2 === 0 ? -1 : seed;
      case 'bool': return seed % 2 === 0;
      case 'string': return `s${seed}-ü`;
      case 'topic': return `topic.${seed}_x-y`;
      case 'bytes': return Uint8Array.of(seed & 255, 1, 2);
    }
  }
  if ('optional' in field) return seed % 2 === 0 ? undefined : sampleOf(field.optional, seed);
  if ('oneOf' in field) return field.oneOf[seed % field.oneOf.length];
  return [sample(field.list, seed + 1), sample(field.list, seed + 2)].slice(0, field.max);
}

function sample(schema: Schema, seed: number): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  Object.entries(schema).forEach(([name, field], i) => {
    const value = sampleOf(field, seed + i);
    if (value !== undefined) out[name] = value;
  });
  return out;
}

const kinds = Object.keys(MESSAGES) as MessageKind[];

t.test('every message round-trips', async (t) => {
  for (const kind of kinds) {
    const body = sample(MESSAGES[kind], 3) as Body<typeof kind>;
    const decoded = decodeMessage(encodeMessage(kind, 42, body));
    t.same(decoded, { v: WIRE_VERSION, kind, id: 42, ...body }, kind);
  }
});

t.test('the decoder refuses what it does not know', async (t) => {
  const raw = new Packr({ useRecords: false });
  const good = { v: WIRE_VERSION, kind: 'append', id: 1, topic: 't', partition: 0, epoch: 1,
    leaseId: 1, position: 0, bytes: 100, records: 1, producerId: -1, sequence: -1 };
  t.ok(decodeMessage(raw.pack(good)));
  const bad: [string, unknown][] = [
    ['version', { ...good, v: 99 }],
    ['kind', { ...good, kind: 'launchMissiles' }],
    ['id', { ...good, id: -1 }],
    ['unknown field', { ...good, extra: 1 }],
    ['missing field', { ...good, bytes: undefined }],
    ['wrong type', { ...good, bytes: '100' }],
    ['negative uint', { ...good, partition: -1 }],
    ['fraction', { ...good, records: 1.5 }],
    ['not a map', [1, 2, 3]],
    // Values String() cannot convert (a TypeError escaped the decoder: found by the fuzz test).
    ['id {toString: 1}', { ...good, id: { toString: 1 } }],
    ['version {toString: 1}', { ...good, v: { toString: 1, valueOf: 2 } }],
    ['kind {toString: 1}', { ...good, kind: { toString: 1 } }],
    ['kind [{toString: 1}]', { ...good, kind: [{ toString: 1 }] }],
    ['version {constructor: 1}', { ...good, v: { constructor: 1, toString: 'x' } }],
  ];
  for (const [what, value] of bad) {
    t.throws(() => decodeMessage(raw.pack(value)), { code: 'PMQ_ERR_PROTOCOL' }, what);
  }
  // Well formed but naming no possible topic: an argument error (test/unit/topic-name.test.ts).
  t.throws(() => decodeMessage(raw.pack({ ...good, topic: 'no spaces allowed' })),
    { code: 'PMQ_ERR_ARGUMENT' }, 'topic name');
  const bytes = raw.pack(good);
  for (let cut = 0; cut < bytes.byteLength; cut += 1) {
    t.throws(() => decodeMessage(bytes.subarray(0, cut)), { code: 'PMQ_ERR_PROTOCOL' },
      `truncated at ${cut}`);
  }
});

t.test('frame header', async (t) => {
  t.doesNotThrow(() => checkFrameHeader(FRAME_HEADER));
  t.throws(() => checkFrameHeader(Uint8Array.of(1, 2, 3, 4)), { code: 'PMQ_ERR_PROTOCOL' });
  t.throws(() => checkFrameHeader(Uint8Array.of(0x50, 0x51, 99, 0)), /version 99/);
});

t.test('docs/wire-protocol.md names every message kind', async (t) => {
  const { readFileSync } = await import('node:fs');
  const doc = readFileSync(new URL('../../docs/wire-protocol.md', import.meta.url), 'utf8');
  for (const kind of kinds) t.match(doc, `\`${kind}\``, kind);
});
