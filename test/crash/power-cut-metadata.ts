/**
 * Metadata under a power cut of a real storage node (power-cut-node.ts): while the producers
 * load the node, one client in the test process commits a group offset (0, 1, 2, …) and now and
 * then creates a topic, and remembers what was acknowledged before the cut. After the restart
 * on the cut's image, the group's committed offset must be at least the last acknowledged one
 * (and at most the last one asked for), and every acknowledged topic must exist: the metadata
 * log is in the same region, under the same persistence order (docs/broker.md, "Where
 * metadata lives").
 */
import type { Client } from '../../clients/index.js';
import { connectRetrying, sleep } from './nemesis-common.js';

export const METADATA_GROUP = 'powercut-group';
/** Every this many metadata operations one is a topic create, the rest group commits. */
const CREATE_EVERY = 8;

export interface MetadataLoad {
  /** Acknowledgements arriving after this are not counted (call it at the cut). */
  freeze(): void;
  /** Resolves once the loop ended (its connection died with the cluster). */
  readonly done: Promise<void>;
  readonly acked: { offset: number; asked: number; topics: string[] };
}

export function startMetadataLoad(broker: string, topic: string, requestTimeoutMs: number):
  MetadataLoad {
  let counting = true;
  const acked = { offset: -1, asked: -1, topics: [] as string[] };
  const done = (async () => {
    const client = await connectRetrying(broker, 'powercut-metadata', requestTimeoutMs);
    const consumer = client.consumer({ groupId: METADATA_GROUP });
    try {
      for (let i = 0; counting; i += 1) {
        try {
          if (i % CREATE_EVERY === CREATE_EVERY - 1) {
            const name = `${topic}-meta-${i}`;
            await client.admin().createTopic(name, { partitions: 1 });
            if (counting) acked.topics.push(name);
          } else {
            acked.asked = i;
            await consumer.commit([{ topic, partition: 0, offset: i }]);
            if (counting) acked.offset = i;
          }
        } catch {
          await sleep(20);
        }
      }
    } finally {
      await Promise.race([client.close().catch(() => undefined), sleep(1000)]);
    }
  })();
  return { freeze: () => { counting = false; }, done, acked };
}

/** What the restarted cluster lost of the acknowledged metadata (empty: nothing). */
export async function metadataProblems(client: Client, topic: string,
  acked: MetadataLoad['acked']): Promise<string[]> {
  const problems: string[] = [];
  const consumer = client.consumer({ groupId: METADATA_GROUP });
  const committed = await consumer.committed(topic, 0);
  await consumer.close();
  if (committed < acked.offset || committed > acked.asked) {
    problems.push(`group ${METADATA_GROUP}: committed offset ${committed} after the restart, ` +
      `but ${acked.offset} was acknowledged before the cut (at most ${acked.asked} asked)`);
  }
  const topics = new Set((await client.admin().listTopics()).map((listing) => listing.topic));
  for (const name of acked.topics) {
    if (!topics.has(name)) problems.push(`topic ${name} was acknowledged before the cut, is gone`);
  }
  return problems;
}
