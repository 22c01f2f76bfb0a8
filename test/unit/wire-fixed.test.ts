// Fixed-layout messages (common/wire/fixed.ts): every kind round-trips, every bound of every
// field holds, every malformed frame is refused with the grade docs/wire-protocol.md names, the
// decoder reuses its objects, and the docs' byte tables are the layouts.
import { readFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

import t, { type Test } from 'tap';

import { ProtocolError } from '../../common/wire/codec.js';
import {
  FIXED_FORMAT, FIXED_LAYOUTS, FIXED_PREFIX_BYTES, FixedDecoder, FixedEncoder, fixedBytes,
  fixedFields, isFixedFrame, type FixedKind,
} from '../../common/wire/fixed.js';
import { MESSAGES, WIRE_VERSION } from '../../common/wire/messages.js';

const kinds = Object.keys(FIXED_LAYOUTS) as FixedKind[];
const EMPTY = new Uint8Array(0);

/** A body with a distinct value per field (large ones too: the high word must survive). */
function sample(kind: FixedKind, seed: number): Record<string, number | boolean> {
  const body: Record<string, number | boolean> = {};
  fixedFields(kind).forEach(({ name, type }, index) => {
    const n = seed * 31 + index;
    if (type === 'bool') body[name] = n % 2 === 1;
    else if (type === 'u32') body[name] = 0xffff_0000 + n;
    else if (type === 'u64') body[name] = Number.MAX_SAFE_INTEGER - n;
    else body[name] = n % 2 === 0 ? -1 : -Number.MAX_SAFE_INTEGER + n;
  });
  return body;
}

function encoded(kind: FixedKind, id: number, body: object): Uint8Array {
  const bytes = new FixedEncoder().encode(kind, id, body);
  if (bytes === null) throw new Error(`${kind} did not encode`);
  return Uint8Array.from(bytes);
}

t.test('every fixed kind round-trips, header first', async (t) => {
  const decoder = new FixedDecoder();
  for (const kind of kinds) {
    const body = sample(kind, 5);
    const bytes = encoded(kind, 0xfedc_ba98, body);
    t.equal(bytes.byteLength, fixedBytes(kind), `${kind}: its layout's length`);
    t.same([...bytes.subarray(0, 4)], [0x50, 0x51, WIRE_VERSION, FIXED_FORMAT], kind);
    t.ok(isFixedFrame(bytes));
    t.equal(bytes[4], FIXED_LAYOUTS[kind].code);
    t.same({ ...decoder.decode(bytes, EMPTY) }, { v: WIRE_VERSION, kind, id: 0xfedc_ba98,
      ...body }, kind);
  }
});

t.test('the fixed kinds are catalogue kinds, topic named by id', async (t) => {
  for (const kind of kinds) {
    const schema = MESSAGES[kind] as Record<string, unknown>;
    for (const { name } of fixedFields(kind)) {
      if (name === 'topicId') {
        t.ok('topic' in schema || name in schema, `${kind}: topic or topicId`);
      } else {
        t.ok(name in schema, `${kind}.${name} is a catalogue field`);
      }
    }
    const names = new Set(fixedFields(kind).map((field) => field.name));
    for (const name of Object.keys(schema)) {
      t.ok(names.has(name === 'topic' ? 'topicId' : name), `${kind}.${name} has a place`);
    }
  }
});

t.test('the encoder takes a msgpack body and a topic id; refuses what does not fit', async (t) => {
  const encoder = new FixedEncoder();
  const append = { topic: 'orders', partition: 3, epoch: 2, leaseId: 9, position: 4096,
    bytes: 200, records: 4, producerId: -1, sequence: -1 };
  const bytes = encoder.encode('append', 7, append, 42);
  t.not(bytes, null);
  const decoded = new FixedDecoder().decode(bytes!, EMPTY);
  t.match(decoded, { kind: 'append', id: 7, topicId: 42, partition: 3, position: 4096 });
  t.equal(encoder.encode('append', 7, append), null, 'no topic id: no fixed layout');
  t.equal(encoder.encode('append', 7, { ...append, partition: 2 ** 32 }, 1), null, 'u32');
  t.equal(encoder.encode('append', 7, { ...append, bytes: -1 }, 1), null, 'u64 negative');
  t.equal(encoder.encode('append', 7, { ...append, bytes: 2 ** 53 }, 1), null, 'u64 unsafe');
  t.equal(encoder.encode('append', 7, { ...append, bytes: 1.5 }, 1), null, 'not an integer');
  t.equal(encoder.encode('acked', 7, { baseOffset: 1, leaseEnd: 1 }), null, 'bool');
  t.equal(encoder.encode('done', 2 ** 32, {}), null, 'id');
  t.equal(encoder.encode('watermark', 0, { subscription: 1 }), null, 'a missing field');
});

t.test('the decoder reuses one object per kind', async (t) => {
  const decoder = new FixedDecoder();
  const first = decoder.decode(encoded('acked', 1, { baseOffset: 1, leaseEnd: true }), EMPTY);
  const second = decoder.decode(encoded('acked', 2, { baseOffset: 9, leaseEnd: false }), EMPTY);
  t.equal(first, second);
  t.match(second, { id: 2, baseOffset: 9, leaseEnd: false });
});

/** Decodes and returns the refusal (or fails the test). */
function refusal(t: Test, header: Uint8Array, payload = EMPTY): ProtocolError {
  try {
    new FixedDecoder().decode(header, payload);
  } catch (error) {
    if (error instanceof ProtocolError) return error;
    throw error;
  }
  t.fail('decoded');
  return new ProtocolError('decoded');
}

t.test('every rejection: answerable with the id, or not at all', async (t) => {
  const good = encoded('append', 77, sample('append', 1));
  const edit = (at: number, value: number): Uint8Array => {
    const bytes = Uint8Array.from(good);
    bytes[at] = value;
    return bytes;
  };
  const answered = (what: string, header: Uint8Array, text: RegExp, payload = EMPTY): void => {
    const error = refusal(t, header, payload);
    t.equal(error.code, 'PMQ_ERR_PROTOCOL', what);
    t.same(error.replyTo?.id, 77, `${what}: answered with its id`);
    t.match(error.message, text, what);
  };
  answered('another version', edit(2, WIRE_VERSION - 1),
    new RegExp(`wire version ${WIRE_VERSION - 1} not supported`));
  answered('an unknown kind', edit(4, 0), /unknown fixed-layout kind 0/);
  answered('kind 200', edit(4, 200), /unknown fixed-layout kind 200/);
  answered('reserved bytes', edit(6, 1), /reserved/);
  answered('one byte short', good.subarray(0, good.byteLength - 1), /the layout is 76 bytes/);
  answered('one byte long', Uint8Array.of(...good, 0), /the layout is 76 bytes/);
  answered('a payload', good, /payload of 1/, Uint8Array.of(1));
  answered('another kind\'s length', edit(4, FIXED_LAYOUTS.acked.code), /bad acked/);
  // u32 fields take any value; u64 ones stop at 2^53 - 1, i64 ones at ±(2^53 - 1).
  const high = (value: number, field = 'position'): Uint8Array => {
    const bytes = Uint8Array.from(good);
    const at = fixedFields('append').find((f) => f.name === field)!.offset;
    new DataView(bytes.buffer).setInt32(at + 4, value, true);
    return bytes;
  };
  answered('u64 of 2^53', high(0x20_0000), /append\.position: out of range/);
  answered('u64 negative', high(-1), /append\.position: out of range/);
  answered('i64 below -(2^53)', high(-0x20_0001, 'producerId'), /producerId: out of range/);
  const minimum = high(-0x20_0000, 'producerId');
  const at = fixedFields('append').find((f) => f.name === 'producerId')!.offset;
  new DataView(minimum.buffer).setUint32(at, 0, true);
  answered('i64 of -(2^53)', minimum, /producerId: out of range/);
  const acked = encoded('acked', 77, { baseOffset: 1, leaseEnd: true });
  acked[fixedBytes('acked') - 1] = 2;
  answered('a bool of 2', acked, /acked\.leaseEnd: not 0 or 1/);

  const closed = (what: string, header: Uint8Array): void => {
    t.equal(refusal(t, header).replyTo, null, `${what}: not answerable`);
  };
  closed('no id', good.subarray(0, FIXED_PREFIX_BYTES - 1));
  closed('the frame header alone', good.subarray(0, 4));
  closed('bad magic', edit(0, 0x51));
});

t.test('in range at the limits', async (t) => {
  const decoder = new FixedDecoder();
  const body = { subscription: Number.MAX_SAFE_INTEGER, epoch: 0, chainPosition: 2 ** 32,
    position: 2 ** 32 - 1, offsetLast: -Number.MAX_SAFE_INTEGER, sealed: false,
    highWatermark: 0 };
  t.match(decoder.decode(encoded('watermark', 0, body), EMPTY), body);
  t.match(decoder.decode(encoded('watermark', 0, { ...body, offsetLast: Number.MAX_SAFE_INTEGER }),
    EMPTY), { offsetLast: Number.MAX_SAFE_INTEGER });
});

t.test('docs/wire-protocol.md lists every layout, byte by byte', async (t) => {
  const docs = readFileSync(new URL('../../docs/wire-protocol.md', import.meta.url), 'utf8');
  for (const kind of kinds) {
    const heading = `\`${kind}\` (kind ${FIXED_LAYOUTS[kind].code}, ${fixedBytes(kind)} bytes)`;
    t.ok(docs.includes(heading), `docs name ${heading}`);
    const section = docs.slice(docs.indexOf(heading));
    const table = section.slice(0, section.indexOf('\n\n', heading.length + 2));
    for (const { name, type, offset } of fixedFields(kind)) {
      const width = { u32: 4, u64: 8, i64: 8, bool: 1 }[type];
      t.ok(table.includes(`| ${offset} | ${width} | ${name} | ${type} |`),
        `${kind}.${name} at ${offset}, ${width} bytes, ${type}`);
    }
  }
});

/** Large values (boxed numbers in V8): what the spelt-out layouts must equal the table for. */
function largeSample(kind: FixedKind): Record<string, number | boolean> {
  const body: Record<string, number | boolean> = {};
  for (const { name, type } of fixedFields(kind)) {
    body[name] = type === 'bool' ? true : type === 'u32' ? 2 ** 31 + 5
      : type === 'i64' ? -(2 ** 40) - 3 : 2 ** 40 + 7;
  }
  return body;
}

t.test('the broker\'s decodes and encodes allocate nothing (no scavenge in 1 M)', async (t) => {
  // A process of its own (test/fixtures/fixed-wire-alloc.ts): this one's other tests would
  // shape V8's code for these functions.
  const run = spawnSync(process.execPath, ['--import', 'tsx',
    fileURLToPath(new URL('../fixtures/fixed-wire-alloc.ts', import.meta.url))],
  { encoding: 'utf8', timeout: 120_000 });
  t.equal(run.status, 0, run.stderr);
  const counts = JSON.parse(run.stdout) as { decodes: number;
    encodes: { interleaved: number }; msgpack: number };
  t.comment(`scavenges per 1 M: ${JSON.stringify(counts)} (msgpack: 200 k decodes)`);
  t.ok(counts.decodes <= 1, `append, lease, leaseRelease: ${counts.decodes} in 1 M decodes`);
  t.ok(counts.encodes.interleaved <= 1, `acked, duplicate, leased, done, watermark: ` +
    `${counts.encodes.interleaved} in 1 M encodes`);
  t.ok(counts.msgpack > 1, 'msgpack (a map per message) does collect: the meter sees allocation');
});

t.test('the spelt-out layouts equal the table, byte for byte', async (t) => {
  const fast = new FixedEncoder();
  const table = new FixedEncoder();
  const fastDecoder = new FixedDecoder();
  const tableDecoder = new FixedDecoder({ byTable: true });
  for (const kind of kinds) {
    for (const body of [sample(kind, 1), sample(kind, 8), largeSample(kind)]) {
      const a = Uint8Array.from(fast.encode(kind, 5, body)!);
      const b = Uint8Array.from(table.encodeByTable(kind, 5, body)!);
      t.same([...a], [...b], `${kind}: encoded alike`);
      t.same({ ...fastDecoder.decode(a, EMPTY) }, { ...tableDecoder.decode(a, EMPTY) },
        `${kind}: decoded alike`);
    }
    for (const { name, type, offset } of fixedFields(kind)) {
      if (type === 'u32' || type === 'bool') continue;
      const bytes = Uint8Array.from(table.encodeByTable(kind, 5, sample(kind, 2))!);
      new DataView(bytes.buffer).setInt32(offset + 4, type === 'u64' ? 0x20_0000 : -0x20_0001,
        true);
      const message = (decoder: FixedDecoder): string => {
        try {
          decoder.decode(bytes, EMPTY);
          return 'decoded';
        } catch (error) {
          return error instanceof ProtocolError ? error.message.split(':')[0]! : String(error);
        }
      };
      t.equal(message(fastDecoder), `bad ${kind}.${name}`, `${kind}.${name} out of range`);
      t.equal(message(tableDecoder), `bad ${kind}.${name}`, `${kind}.${name} (table)`);
    }
  }
});
