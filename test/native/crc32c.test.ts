// CRC32C against published vectors (RFC 3720 B.4, the "123456789" check value), hardware ==
// software on random buffers of many sizes and alignments (three-lane block edges included),
// chaining, argument checks.
import { randomBytes } from 'node:crypto';
import t from 'tap';

import { crc32c, crc32cImplementation, crc32cSoftware } from '../../native/crc32c.js';

const ISCSI_READ_PDU = [
  0x01, 0xc0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
  0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x18,
  0x28, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
];

const VECTORS: readonly { name: string; bytes: Uint8Array; crc: number }[] = [
  { name: '32 bytes of 0x00', bytes: new Uint8Array(32), crc: 0x8a9136aa },
  { name: '32 bytes of 0xff', bytes: new Uint8Array(32).fill(0xff), crc: 0x62a8ab43 },
  { name: '32 incrementing', bytes: Uint8Array.from({ length: 32 }, (_, i) => i), crc: 0x46dd794e },
  { name: '32 decrementing', bytes: Uint8Array.from({ length: 32 }, (_, i) => 31 - i),
    crc: 0x113fdb5c },
  { name: 'iSCSI read PDU', bytes: Uint8Array.from(ISCSI_READ_PDU), crc: 0xd9963a56 },
  { name: '"123456789"', bytes: new TextEncoder().encode('123456789'), crc: 0xe3069283 },
  { name: 'empty', bytes: new Uint8Array(0), crc: 0 },
];

t.test('published test vectors, both implementations', async (t) => {
  t.match(crc32cImplementation(), /^(sse4\.2|software)$/);
  t.comment(`active implementation: ${crc32cImplementation()}`);
  for (const { name, bytes, crc } of VECTORS) {
    t.equal(crc32c(bytes), crc, `${name} (active)`);
    t.equal(crc32cSoftware(bytes), crc, `${name} (software)`);
  }
});

t.test('hardware equals software on many sizes and alignments', async (t) => {
  const pool = randomBytes(70_000);
  const sizes = [0, 1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 63, 64, 65, 255, 256, 1000, 4096, 65_537];
  let mismatches = 0;
  for (const size of sizes) {
    for (let alignment = 0; alignment < 9; alignment += 1) {
      const seed = (size * 2654435761 + alignment) >>> 0;
      for (const s of [0, seed]) {
        if (crc32c(pool, alignment, size, s) !== crc32cSoftware(pool, alignment, size, s)) {
          mismatches += 1;
        }
      }
    }
  }
  t.equal(mismatches, 0, `${sizes.length * 9 * 2} comparisons`);
  const view = new Uint8Array(pool.buffer, pool.byteOffset + 5, 1000);
  t.equal(crc32c(view), crc32cSoftware(pool, 5, 1000), 'a view with its own byteOffset');
});

t.test('three-lane blocks: every lane boundary, hardware equals software', async (t) => {
  // The hardware path runs 3 × 4096- and 3 × 256-byte blocks as three lanes joined by shift
  // tables (native/crc32c.cc); sizes around each block edge and several blocks, at odd starts.
  const pool = randomBytes(200_000);
  const edges = [768, 3 * 4096, 2 * 3 * 4096 + 768, 5 * 3 * 4096];
  const sizes = edges.flatMap((edge) => [edge - 9, edge - 8, edge - 1, edge, edge + 1, edge + 8,
    edge + 767]).concat([150_001, 199_990]);
  let mismatches = 0;
  for (const size of sizes) {
    for (const start of [0, 3, 8]) {
      if (crc32c(pool, start, size) !== crc32cSoftware(pool, start, size)) mismatches += 1;
      const seed = (size * 40503) >>> 0;
      if (crc32c(pool, start, size, seed) !== crc32cSoftware(pool, start, size, seed)) {
        mismatches += 1;
      }
    }
  }
  t.equal(mismatches, 0, `${sizes.length * 3 * 2} comparisons`);
});

t.test('chaining with a seed equals one pass', async (t) => {
  const bytes = randomBytes(5000);
  const whole = crc32c(bytes);
  for (const cut of [0, 1, 7, 8, 2500, 4999, 5000]) {
    const first = crc32c(bytes, 0, cut);
    t.equal(crc32c(bytes, cut, bytes.length - cut, first), whole, `cut at ${cut}`);
    t.equal(crc32cSoftware(bytes, cut, bytes.length - cut, first), whole);
  }
  const a = new TextEncoder().encode('1234');
  const b = new TextEncoder().encode('56789');
  t.equal(crc32c(b, 0, b.length, crc32c(a)), 0xe3069283, 'crc32c(a ‖ b) from pieces');
  t.equal(crc32c(bytes, 10, 0, 0xdeadbeef), 0xdeadbeef, 'empty range returns the seed');
});

t.test('arguments are validated before the addon sees them', async (t) => {
  const bytes = new Uint8Array(16);
  const argument = { code: 'PMQ_ERR_ARGUMENT' };
  type Args = Parameters<typeof crc32c>;
  const bad: Args[] = [
    [[1, 2, 3] as unknown as Uint8Array],
    [new Uint16Array(4) as unknown as Uint8Array],
    [null as unknown as Uint8Array],
    [bytes, -1], [bytes, 17], [bytes, 1.5], [bytes, 0, 17], [bytes, 8, 9], [bytes, 0, -1],
    [bytes, 0, 1, -1], [bytes, 0, 1, 2 ** 32], [bytes, 0, 1, 0.5], [bytes, Number.NaN],
  ];
  for (const args of bad) {
    t.throws(() => crc32c(...args), argument, `crc32c(${String(args.slice(1))})`);
    t.throws(() => crc32cSoftware(...args), argument);
  }
  t.equal(crc32c(bytes, 16), 0, 'offset at the end: empty');
  t.equal(crc32c(bytes, 0, 16, 0xffffffff), crc32cSoftware(bytes, 0, 16, 0xffffffff));
});
