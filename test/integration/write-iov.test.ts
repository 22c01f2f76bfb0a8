// writeValidatedIov (docs/native-transport.md, "Gathered writes"): one write_request whose
// payload UCX gathers from several buffers, against `pmq storage` in its own process (this
// process speaks as the broker, for grants, and as the client). The bytes land exactly as the
// pieces' concatenation (eager and rendezvous, pieces that are views at an offset); bad pieces
// are refused in the caller (ArgumentError, nothing sent); a gathered write outside its grant,
// or a write_request whose length does not match its payload, is refused by the storage node,
// which leaves its memory unchanged and keeps serving.
import { randomBytes } from 'node:crypto';
import { closeSync, mkdtempSync, openSync, readSync, rmSync } from 'node:fs';
import { join } from 'node:path';

import { pino } from 'pino';
import t from 'tap';

import { BROKER_SESSION } from '../../common/auth/keys.js';
import type { Body, Message, RequestKind } from '../../common/wire/messages.js';
import { helloWithKey } from '../../broker-node/storage-auth.js';
import { Transport, WRITE_PIECES_MAX, type Endpoint } from '../../native/transport.js';
import { ControlChannel } from '../../rpc/control-channel.js';
import { testKey, testKeyFile } from '../helpers/cluster-key.js';
import { startStorage, type StorageProcess } from '../helpers/storage-process.js';

const KIB = 1024;
const MIB = 1024 * KIB;
const transport = Transport.open({ transports: 'tcp', netDevices: 'lo' });
const channel = new ControlChannel(transport, pino({ level: 'silent' }));
t.teardown(() => transport.close());
const dir = mkdtempSync('/dev/shm/pmq-write-iov-');
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const keyFile = testKeyFile(dir);
let node: StorageProcess | undefined;
t.teardown(async () => { await node?.kill('SIGKILL'); });

function call<K extends RequestKind>(ep: Endpoint, kind: K, body: Body<K>): Promise<Message> {
  return channel.request(ep, kind, body, 5000);
}

const region = join(dir, 'region');

/** Bytes of the region file (the node's mapping is shared: the file shows its stores). */
function regionBytes(address: number, length: number): Buffer {
  const fd = openSync(region, 'r');
  try {
    const bytes = Buffer.alloc(length);
    readSync(fd, bytes, 0, length, address);
    return bytes;
  } finally {
    closeSync(fd);
  }
}

const concat = (pieces: readonly Uint8Array[]): Buffer => Buffer.concat(pieces);

t.test('gathered writes land as one write; bad ones are refused, the node keeps serving',
  async (t) => {
    node = await startStorage(keyFile, ['--path', region, '--size', '8MiB',
      '--segment-size', '4MiB', '--first-segment-size', '4MiB', '--node-id', '3']);
    const ep = await transport.connect(node.host, node.port);
    await helloWithKey(channel, ep, testKey(keyFile), { epoch: 1, instance: 0x10f }, 'test',
      5000);
    const segment = await call(ep, 'segmentAllocate', { epoch: 1, topic: 'iov', partition: 0,
      chainPosition: 0, baseOffset: 0, sizeBytesMin: 0 }) as Message<'segment'>;
    const base = { session: BROKER_SESSION, key: 1, epoch: 1, segmentIndex: 0, position: 0,
      sizeBytes: 4 * MIB };
    await call(ep, 'grantCreate', { ...base, grantId: 1, direction: 'write' });
    const write = { id: 1, epoch: 1, key: 1 };
    const address = segment.address;
    const backing = randomBytes(600 * KIB);
    const pieces = [randomBytes(61), randomBytes(MIB), backing.subarray(5, 8),
      backing.subarray(100, 100 + 300 * KIB), randomBytes(1)];
    await transport.writeValidatedIov(ep, write, address, pieces);
    const small = [randomBytes(7), randomBytes(100), randomBytes(3)]; // eager
    const smallAt = address + 2 * MIB;
    await transport.writeValidatedIov(ep, write, smallAt, small);
    const length = concat(pieces).byteLength;
    t.same(regionBytes(address, length), concat(pieces), 'rendezvous: the concatenation');
    t.same(regionBytes(smallAt, 110), concat(small), 'eager: the concatenation');

    for (const [what, bad] of [['no pieces', []], ['an empty piece', [randomBytes(8),
      new Uint8Array(0)]], ['not bytes', [randomBytes(8), 'text']], ['too many pieces',
      Array.from({ length: WRITE_PIECES_MAX + 1 }, () => randomBytes(1))]] as const) {
      t.throws(() => transport.writeValidatedIov(ep, write, address, bad as Uint8Array[]),
        { code: 'PMQ_ERR_ARGUMENT' }, `${what}: refused before anything is sent`);
    }
    const before = regionBytes(address, length);
    // Past the grant's end: the storage node refuses it, nothing lands.
    await t.rejects(transport.writeValidatedIov(ep, write, address + 4 * MIB - 1 * MIB, pieces),
      { code: 'PMQ_ERR_GRANT_OUT_OF_RANGE' });
    // A write_request saying 100 bytes more than its payload (a hostile or broken peer).
    const header = new Uint8Array(56);
    const view = new DataView(header.buffer);
    header[0] = 3; // native wire version
    header[1] = 6; // write_request
    view.setBigUint64(8, 999_999n, true);
    view.setBigUint64(16, 1n, true);
    view.setBigUint64(24, 1n, true);
    view.setBigUint64(32, BigInt(address), true);
    view.setBigUint64(48, 1n, true);
    for (const mode of ['eager', 'rndv'] as const) {
      const payload = randomBytes(mode === 'eager' ? 64 : MIB);
      view.setBigUint64(40, BigInt(payload.byteLength + 100), true);
      await transport.sendRaw(ep, header, payload, mode).catch(() => undefined);
    }
    t.same(regionBytes(address, length), before, 'refused writes changed nothing');
    await transport.writeValidatedIov(ep, write, address, pieces.slice().reverse());
    t.same(regionBytes(address, length), concat(pieces.slice().reverse()),
      'the node still serves gathered writes');
    t.equal(node.child.exitCode, null, 'the storage node is alive');
  });
