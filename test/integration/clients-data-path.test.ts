// The consumers' data path (docs/clients.md, "Data path") on this machine's transports, with
// real processes: `pmq storage --direct` (tcp and shared memory offered) + `pmq broker`.
// - 'direct' over tcp and over shared memory fails with PMQ_ERR_DIRECT_UNSUPPORTED, naming the
//   lanes and what to use instead; no key is asked for.
// - 'auto' falls back to validated reads and reads every record (CRC-checked by the consumer).
// - the storage node's own refusals of `directKey`, in the order it checks: without --direct,
//   unknown grant, write grant, a grant that is not its whole segment, then non-RDMA lanes.
// Direct reads over rc_verbs are proven in the soft-RoCE VM (test/rdma/cluster-suite.ts).
import { pino } from 'pino';
import t from 'tap';

import { connect, PmqError, type Client, type Consumer } from '../../clients/index.js';
import { randomSessionId } from '../../common/auth/keys.js';
import { issueTicket } from '../../common/auth/ticket.js';
import type { Body, Message, RequestKind } from '../../common/wire/messages.js';
import { Transport } from '../../native/transport.js';
import { ControlChannel } from '../../rpc/control-channel.js';
import { helloWithKey } from '../../broker-node/storage-auth.js';
import { startBroker, startStorage, tempDir, type Proc } from '../helpers/broker-cluster.js';
import { testKey, testKeyFile } from '../helpers/cluster-key.js';

const RECORDS = 300;
const { dir, remove } = tempDir('pmq-data-path-');
const procs: Proc[] = [];
t.teardown(async () => {
  for (const proc of procs) {
    if (proc.child.exitCode === null && proc.child.signalCode === null) {
      const exited = new Promise((resolve) => proc.child.once('exit', resolve));
      proc.child.kill('SIGKILL');
      await exited;
    }
  }
  remove();
});

/** `pmq storage --direct` + `pmq broker`, both on `transports` (UCX's tcp-only and shared-memory
 *  peers do not connect to each other: their error-handling modes differ). */
async function startCluster(name: string, transports: string): Promise<{ storage: Proc;
  brokers: string[]; epoch: number }> {
  const flags = ['--transports', transports];
  const storage = await startStorage(`${dir}/${name}.region`, 1, 0, [...flags, '--direct']);
  procs.push(storage);
  const broker = await startBroker(`${dir}/${name}-broker`, [storage], flags);
  procs.push(broker);
  return { storage, brokers: [`${broker.host}:${broker.port}`], epoch: Number(broker.match[3]) };
}

const { storage, brokers, epoch: brokerEpoch } = await startCluster('tcp', 'tcp');

function valueOf(i: number): string {
  return `record ${i} `.padEnd(100 + (i % 37), String.fromCharCode(97 + (i % 26)));
}

async function firstFailure(consumer: Consumer): Promise<unknown> {
  try {
    for await (const record of consumer) return new Error(`read ${record.offset}`);
  } catch (error) {
    return error;
  }
  return new Error('the consumer ended');
}

t.test('produce the records (validated writes)', async (t) => {
  const client = await connect({ brokers, transports: 'tcp', netDevices: 'lo' });
  await client.admin().createTopic('paths', { partitions: 1 });
  const producer = client.producer({ lingerMs: 2 });
  await Promise.all(Array.from({ length: RECORDS }, (_, i) =>
    producer.send({ topic: 'paths', partition: 0, records: [{ value: valueOf(i) }] })));
  await client.close();
  t.pass(`${RECORDS} records produced`);
});

for (const transports of ['tcp', 'sm,tcp']) {
  t.test(`dataPath 'direct' over ${transports} fails with a clear error`, async (t) => {
    const cluster = transports === 'tcp' ? { brokers } : await startCluster('sm', transports);
    const client = await connect({ brokers: cluster.brokers, transports, netDevices: 'lo',
      dataPath: 'direct' });
    t.teardown(() => client.close());
    if (transports !== 'tcp') {      // producers write validated whatever the dataPath
      await client.admin().createTopic('paths', { partitions: 1 });
      await client.producer().send({ topic: 'paths', records: [{ value: valueOf(0) }] });
    }
    const consumer = client.consumer({ start: 'earliest', maxWaitMs: 100 });
    await consumer.assign([{ topic: 'paths', partition: 0 }]);
    const error = await firstFailure(consumer);
    t.ok(error instanceof PmqError, String(error));
    t.match(error, { code: 'PMQ_ERR_DIRECT_UNSUPPORTED', retriable: false,
      message: /needs RDMA lanes.*storage node 1 uses .*'validated' or 'auto'/ });
    t.comment((error as Error).message);
  });
}

t.test("dataPath 'auto' over tcp falls back to validated and reads everything", async (t) => {
  const client: Client = await connect({ brokers, transports: 'tcp', netDevices: 'lo',
    dataPath: 'auto' });
  t.teardown(() => client.close());
  const consumer = client.consumer({ start: 'earliest', maxWaitMs: 100, readChunkBytes: 8192 });
  await consumer.assign([{ topic: 'paths', partition: 0 }]);
  const text = new TextDecoder();
  let next = 0;
  for await (const record of consumer) {
    if (record.offset !== next || text.decode(record.value!) !== valueOf(next)) {
      t.fail(`record ${record.offset} (expected ${next}) differs`);
      break;
    }
    next += 1;
    if (next === RECORDS) break;
  }
  t.equal(next, RECORDS, 'every record, in order, byte for byte');
  const [path] = client.dataPaths();
  t.match(path, { nodeId: 1, dataPath: 'validated', lanes: ['tcp'],
    reads: { direct: 0 } });
  t.ok(path!.reads.validated > 1, `${path!.reads.validated} validated reads`);
});

t.test('the storage node refuses directKey where it must', async (t) => {
  const transport = Transport.open({ transports: 'tcp', netDevices: 'lo' });
  t.teardown(() => transport.close());
  const channel = new ControlChannel(transport, pino({ level: 'silent' }));
  const plain = await startStorage(`${dir}/plain`, 2);
  procs.push(plain);
  const call = async <K extends RequestKind>(proc: Proc, kind: K, body: Body<K>):
    Promise<Message> => channel.request(await connectTo(proc), kind, body, 5000);
  const eps = new Map<Proc, ReturnType<typeof transport.connect>>();
  // Broker requests to the --direct node need the cluster key's handshake first, as a broker
  // instance of its own: one epoch above the cluster's broker, which it fences (an epoch has one
  // owner; nothing after this test needs that broker).
  const epoch = brokerEpoch + 1;
  const instance = 0x7e57;
  const key = testKey(testKeyFile(dir));
  // The client session the grants below belong to (the ticket bound further down names it).
  const SESSION = randomSessionId();
  const GRANT_KEY = 0x5eed;
  const connectTo = (proc: Proc): ReturnType<typeof transport.connect> => {
    if (!eps.has(proc)) {
      eps.set(proc, transport.connect(proc.host, proc.port).then(async (ep) => {
        if (proc === storage) {
          await helloWithKey(channel, ep, key, { epoch, instance }, 'test', 5000);
        }
        return ep;
      }));
    }
    return eps.get(proc)!;
  };
  const refused = async (proc: Proc, grantId: number, code: string, message: RegExp):
    Promise<void> => {
    await t.rejects(call(proc, 'directKey', { grantId, grantKey: GRANT_KEY, grantEpoch: epoch }),
      { code, message },
      `grant ${grantId}: ${code}`);
  };
  await refused(plain, 1, 'PMQ_ERR_DIRECT_UNSUPPORTED', /without --direct/);
  // A segment of its own on the --direct node, under the broker's epoch (the broker ignores it).
  const allocate = await call(storage, 'segmentAllocate', { epoch,
    topic: 'raw', partition: 0, chainPosition: 0, baseOffset: 0, sizeBytesMin: 0 });
  t.equal(allocate.kind, 'segment');
  const segmentIndex = (allocate as Message<'segment'>).segmentIndex;
  const grant = (grantId: number, position: number, sizeBytes: number,
    direction: 'read' | 'write'): Promise<Message> => call(storage, 'grantCreate',
    { epoch, grantId, session: SESSION, key: GRANT_KEY, segmentIndex, position,
      sizeBytes, direction });
  await grant(9001, 0, 64 * 1024, 'write');
  await grant(9002, 4096, 8192, 'read');
  await grant(9003, 0, 64 * 1024, 'read');
  // directKey needs a bound session that allows direct mode (client-auth.test.ts checks the
  // refusals): a ticket signed with the nodes' cluster key.
  const now = Date.now();
  await call(storage, 'sessionBind', { ticket: issueTicket(key, {
    epoch, sessionId: SESSION, issuedAtMs: now,
    expiresAtMs: now + 60_000, principal: '', authenticated: false, directAllowed: true }) });
  await refused(storage, 9999, 'PMQ_ERR_GRANT_UNKNOWN', /no such grant/);
  await refused(storage, 9001, 'PMQ_ERR_DIRECT_UNSUPPORTED', /read grants only/);
  await refused(storage, 9002, 'PMQ_ERR_DIRECT_UNALIGNED', /not its whole segment/);
  await refused(storage, 9003, 'PMQ_ERR_DIRECT_UNSUPPORTED', /uses tcp, not RDMA/);
  await t.rejects(call(storage, 'directKey', { grantId: 9003, grantKey: GRANT_KEY,
    grantEpoch: epoch + 1 }),
    { code: 'PMQ_ERR_GRANT_STALE_EPOCH' });
  await call(storage, 'grantRevoke', { epoch, grantId: 9003 });
  await refused(storage, 9003, 'PMQ_ERR_GRANT_REVOKED', /revoked/);
});
