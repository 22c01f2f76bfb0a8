// A consumer keeps reading across a broker restart: the restarted broker raised the fencing
// epoch, the storage node revoked every grant of the old instance, and the consumer's next read
// under its cached segment view is refused (PMQ_ERR_GRANT_UNKNOWN). That refusal must send the
// consumer back to the broker for a fresh view, not end its iterator. Found by the nemesis
// (test/crash/nemesis.test.ts): a consumer died with "validated access refused by the peer: no
// such grant" after a broker SIGKILL. With prefetchBatches 1 the same test also caught a lost
// wake-up in the consumer's fetch loop (it stopped fetching after the first batch, for good).
import t from 'tap';

import { connect } from '../../clients/index.js';
import { E2eCluster } from '../helpers/e2e-cluster.js';

const CLIENT = { transports: 'tcp', netDevices: 'lo', logLevel: 'silent' } as const;
const text = new TextDecoder();

t.test('a consumer reads on across a broker restart (stale read grant)', async (t) => {
  const cluster = await E2eCluster.start({ segmentSize: '256KiB' });
  t.teardown(() => cluster.stop());
  const client = await connect({ brokers: [cluster.brokerAddress], ...CLIENT });
  t.teardown(() => client.close());
  await client.admin().createTopic('steady', { partitions: 1 });
  const producer = client.producer({ lingerMs: 0 });
  const values = Array.from({ length: 400 }, (_, i) => `v-${i}-`.padEnd(200, 'x'));
  for (let i = 0; i < values.length; i += 50) {
    await producer.send({ topic: 'steady', partition: 0,
      records: values.slice(i, i + 50).map((value) => ({ value })) });
  }
  // Small reads and one buffered batch: most of the segment view is still unread at the kill.
  const consumer = client.consumer({ start: 'earliest', readChunkBytes: 4096,
    prefetchBatches: 1, maxWaitMs: 100 });
  await consumer.assign([{ topic: 'steady', partition: 0 }]);
  const seen: string[] = [];
  let restarted = false;
  for await (const record of consumer) {
    seen.push(text.decode(record.value!));
    if (seen.length === 20 && !restarted) {
      restarted = true;
      await cluster.killBroker();
      await cluster.startBroker();
    }
    if (seen.length === values.length) break;
  }
  await consumer.close();
  t.same(seen, values, 'every record once, in order, across the restart');
});
