/**
 * Persist frames (common/wire/persist-frame.ts): round trips, every refusal, and random bytes,
 * which must only ever fail as ProtocolError (a RangeError escaping the decoder stops a node:
 * the fuzz in test/integration/persist-native.test.ts found one).
 */
import t, { type Test } from 'tap';

import { ProtocolError } from '../../common/wire/codec.js';
import { WIRE_VERSION } from '../../common/wire/messages.js';
import {
  decodePersistFrame, emptyPersistedMessage, encodePersistedFrame, encodePersistFrame,
  PERSIST_FRAME_HEADER,
} from '../../common/wire/persist-frame.js';
import { prngFrom, testSeed } from '../fixtures/record-batch-random.js';

const body = { epoch: 7, segmentIndex: 3, position: 2 ** 40 + 5, offsetLast: 2 ** 52,
  seal: false, patches: [{ position: 0, baseOffset: 2 ** 52 - 9, bytes: 68, records: 1 },
    { position: 68, baseOffset: 2 ** 52 - 8, bytes: 0xffff_ffff, records: 9 }] };

t.test('persist and persisted round-trip', async (t) => {
  t.same(decodePersistFrame(PERSIST_FRAME_HEADER, encodePersistFrame(42, body)),
    { v: WIRE_VERSION, kind: 'persist', id: 42, ...body });
  const sealed = { ...body, seal: true, patches: [], offsetLast: -1 };
  t.same(decodePersistFrame(PERSIST_FRAME_HEADER, encodePersistFrame(0xffff_ffff, sealed)),
    { v: WIRE_VERSION, kind: 'persist', id: 0xffff_ffff, ...sealed });
  const persisted = { segmentIndex: 0xffff_ffff, position: 2 ** 53 - 1, offsetLast: -1,
    sealed: true };
  t.same(decodePersistFrame(PERSIST_FRAME_HEADER, encodePersistedFrame(9, persisted)),
    { v: WIRE_VERSION, kind: 'persisted', id: 9, ...persisted });
});

function refused(t: Test, bytes: Uint8Array, problem: RegExp, answerable = true,
  header = PERSIST_FRAME_HEADER): void {
  try {
    decodePersistFrame(header, bytes);
    t.fail(`accepted: ${problem}`);
  } catch (error) {
    t.ok(error instanceof ProtocolError, 'a ProtocolError');
    t.match((error as Error).message, problem);
    t.equal((error as ProtocolError).replyTo !== null, answerable,
      answerable ? 'answerable' : 'closes the connection');
  }
}

t.test('every refusal', async (t) => {
  const good = encodePersistFrame(5, body);
  const edit = (at: number, value: number): Uint8Array => {
    const bytes = good.slice();
    bytes[at] = value;
    return bytes;
  };
  refused(t, good.subarray(0, 7), /has no id/, false);
  refused(t, edit(4, 0).fill(0, 4, 8), /id 0/, false);
  refused(t, good, /layout version 2/, true, Uint8Array.of(0x50, 0x4e, 2, 0));
  refused(t, good, /reserved/, true, Uint8Array.of(0x50, 0x4e, 1, 1));
  refused(t, edit(2, 1), /reserved/);
  refused(t, edit(1, 2), /flags 2/);
  refused(t, edit(0, 3), /kind 3/);
  refused(t, good.subarray(0, 30), /30 bytes, a persist has at least 40/);
  refused(t, good.subarray(0, good.byteLength - 1), /bytes for 2 pieces/);
  refused(t, edit(20, 200), /bytes for 200 pieces/);
  refused(t, edit(15, 0x40), /out of range/);             // epoch ≥ 2^54
  refused(t, edit(39, 0x80).fill(0, 32, 39), /out of range/);  // offsetLast very negative
  refused(t, edit(40 + 15, 0x80), /piece 0 out of range/);   // baseOffset negative
  const persisted = encodePersistedFrame(9, { segmentIndex: 1, position: 1, offsetLast: 0,
    sealed: false });
  refused(t, persisted.subarray(0, 31), /31 bytes/);
  const reserved = persisted.slice();
  reserved[12] = 1;
  refused(t, reserved, /reserved/);
});

t.test('random and mutated bytes fail only as ProtocolError', async (t) => {
  const seed = testSeed();
  t.comment(`seed ${seed}`);
  const prng = prngFrom(seed);
  let refusals = 0;
  for (let i = 0; i < 20_000; i += 1) {
    const base = prng.chance(0.5) ? encodePersistFrame(1 + prng.int(1000), body) :
      encodePersistedFrame(1 + prng.int(1000), { segmentIndex: 1, position: 5, offsetLast: 3,
        sealed: prng.chance(0.5) });
    let bytes = prng.chance(0.2) ? prng.bytes(prng.int(120)) : base;
    for (let f = prng.int(4); f > 0; f -= 1) bytes[prng.int(bytes.byteLength)] = prng.int(256);
    if (prng.chance(0.2)) bytes = bytes.subarray(0, prng.int(bytes.byteLength + 1));
    try {
      decodePersistFrame(PERSIST_FRAME_HEADER, bytes);
    } catch (error) {
      if (!(error instanceof ProtocolError)) {
        t.fail(`case ${i}: ${String(error)}`);
        return;
      }
      refusals += 1;
    }
  }
  t.ok(refusals > 1000, `${refusals} refused, all as ProtocolError`);
});

/** The decode's outcome as text: the message, or the error's class, message and replyTo. */
function outcome(decode: () => unknown): string {
  try {
    return JSON.stringify(decode());
  } catch (error) {
    return `${(error as Error).name}: ${(error as Error).message} ` +
      JSON.stringify((error as ProtocolError).replyTo);
  }
}

t.test('the refilled decode of persisted replies answers as the allocating one', async (t) => {
  const seed = testSeed();
  t.comment(`seed ${seed}`);
  const prng = prngFrom(seed);
  const into = emptyPersistedMessage();
  const positions = [0, 1, 2 ** 32 - 1, 2 ** 32, 2 ** 53 - 1, 2 ** 53];
  const offsets = [-2, -1, 0, 2 ** 31, 2 ** 32 + 7, 2 ** 53 - 1];
  let differing = 0;
  let decoded = 0;
  for (let i = 0; i < 20_000; i += 1) {
    const bytes = encodePersistedFrame(1 + prng.int(0xffff_fffe), {
      segmentIndex: prng.int(0xffff_ffff), position: positions[prng.int(positions.length)]!,
      offsetLast: offsets[prng.int(offsets.length)]!, sealed: prng.chance(0.5) });
    for (let f = prng.int(3); f > 0; f -= 1) bytes[prng.int(bytes.byteLength)] = prng.int(256);
    const header = prng.chance(0.05) ? Uint8Array.of(0x50, 0x4e, prng.int(3), prng.int(2))
      : PERSIST_FRAME_HEADER;
    const want = outcome(() => decodePersistFrame(header, bytes));
    const got = outcome(() => decodePersistFrame(header, bytes, into));
    if (want !== got) {
      differing += 1;
      if (differing <= 3) t.fail(`case ${i}: ${got}, want ${want}`);
    }
    if (!want.startsWith('ProtocolError') && !want.includes('"kind":"persist"')) decoded += 1;
  }
  t.equal(differing, 0, 'same messages, same refusals');
  t.ok(decoded > 1000, `${decoded} decoded`);
});
