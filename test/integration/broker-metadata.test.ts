// Where metadata lives (issue 10; docs/broker.md, "Where metadata lives"): topics and group
// offsets are in the storage nodes' metadata log, so a broker started on an empty, a stale or
// a copied data directory has every acknowledged topic create and group commit; version-1
// metadata files move into the log once; names starting with __pmq are refused; and the log
// rotates through many commits within one segment of the region.
import { cpSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';

import t from 'tap';

import type { Message } from '../../common/wire/messages.js';
import { encodeDocument, DocumentKind } from '../../broker-node/metadata-legacy.js';
import {
  Client, startBroker, startStorage, stopProc as stop, tempDir, type Proc,
} from '../helpers/broker-cluster.js';

const client = new Client();
t.teardown(() => client.transport.close());
const { dir, remove } = tempDir('pmq-broker-meta-');
const storage = await startStorage(`${dir}/region`, 1);
t.teardown(async () => {
  await stop(storage);
  remove();
});

async function topicsOf(broker: Proc): Promise<string[]> {
  await client.connect(broker);
  const reply = await client.call('topicList', {}) as Message<'topics'>;
  return reply.topics.map((topic) => topic.topic).sort();
}

async function offsetOf(group: string, topic: string): Promise<number> {
  const reply = await client.call('offsetFetch', { group, topic, partition: 0 }) as
    Message<'offset'>;
  return reply.offset;
}

async function commit(group: string, topic: string, offset: number): Promise<void> {
  const reply = await client.call('offsetCommit', { group, topic, partition: 0, offset });
  if (reply.kind !== 'done') throw new Error(`offsetCommit: ${reply.kind}`);
}

t.test('an empty, a stale and a copied data directory lose nothing', async (t) => {
  const a = await startBroker(`${dir}/a`, [storage]);
  await client.connect(a);
  await client.call('topicCreate', { configs: [], topic: 'first', partitions: 1 });
  await commit('g', 'first', 5);
  cpSync(`${dir}/a`, `${dir}/stale`, { recursive: true });
  await client.call('topicCreate', { configs: [], topic: 'second', partitions: 2 });
  await commit('g', 'first', 7);
  await stop(a);
  for (const name of ['empty', 'stale', 'a']) {
    const broker = await startBroker(`${dir}/${name}`, [storage]);
    t.same(await topicsOf(broker), ['first', 'second'], `${name}: every topic`);
    t.equal(await offsetOf('g', 'first'), 7, `${name}: the last committed offset`);
    await stop(broker);
  }
  t.notOk(existsSync(`${dir}/a/topics.pmqmeta`), 'the data directory holds no metadata file');
});

t.test('version-1 metadata files move into the log once', async (t) => {
  const legacy = `${dir}/legacy-region`;
  const node = await startStorage(legacy, 2);
  t.teardown(() => stop(node));
  const data = `${dir}/legacy`;
  mkdirSync(data, { recursive: true });
  writeFileSync(`${data}/topics.pmqmeta`, encodeDocument(DocumentKind.topics, 3,
    { epoch: 4, topics: [{ topic: 'old', partitions: 2, createdAtMs: 1 }] }));
  writeFileSync(`${data}/group-offsets.pmqmeta`, encodeDocument(DocumentKind.groupOffsets, 9,
    { offsets: [{ group: 'g', topic: 'old', partition: 0, offset: 11 }] }));
  let broker = await startBroker(data, [node]);
  t.same(await topicsOf(broker), ['old']);
  t.equal(await offsetOf('g', 'old'), 11);
  t.ok(existsSync(`${data}/topics.pmqmeta.migrated`), 'the old files are renamed');
  t.notOk(existsSync(`${data}/topics.pmqmeta`));
  await stop(broker);
  broker = await startBroker(`${dir}/legacy-empty`, [node]);
  t.same(await topicsOf(broker), ['old'], 'and live in the storage node from then on');
  t.equal(await offsetOf('g', 'old'), 11);
  await stop(broker);
});

t.test('topic names starting with __pmq are reserved', async (t) => {
  const broker = await startBroker(`${dir}/reserved`, [storage]);
  t.teardown(() => stop(broker));
  await client.connect(broker);
  for (const topic of ['__pmq_meta', '__pmq']) {
    await t.rejects(client.call('topicCreate', { configs: [], topic, partitions: 1 }),
      { code: 'PMQ_ERR_ARGUMENT', message: /reserved/ }, topic);
  }
  t.notOk((await topicsOf(broker)).includes('__pmq_meta'), 'the log is no topic');
});

/** A topic's id (wire v8), as a lease by name answers it. */
async function topicIdOf(topic: string): Promise<number> {
  const reply = await client.call('lease', { topic, partition: 0, bytes: 4096, bytesMin: 68,
    releaseEpoch: 0, releaseId: -1 }) as Message<'leased'>;
  return reply.topicId;
}

t.test('many commits rotate the log and keep the last of each', async (t) => {
  const broker = await startBroker(`${dir}/rotate`, [storage]);
  await client.connect(broker);
  await client.call('topicCreate', { configs: [], topic: 'busy', partitions: 1 });
  // The newest topic id, deleted before the log rotates: only the snapshots' nextTopicId keeps
  // it from being given again (docs/wire-protocol.md, "Topic ids").
  await client.call('topicCreate', { configs: [], topic: 'gone', partitions: 1 });
  const goneId = await topicIdOf('gone');
  await client.call('topicDelete', { topic: 'gone' });
  // A group generation (metadata value v4) made before the rotation: only snapshots keep it.
  const joined = await client.call('groupJoin', { group: 'members', memberId: '',
    groupInstanceId: '', clientId: 'test', assignors: [{ name: 'range' }],
    topics: [{ topic: 'busy' }], owned: [], sessionTimeoutMs: 300_000,
    rebalanceTimeoutMs: 1000 }) as Message<'groupJoined'>;
  const groups = 40;
  const rounds = 100; // 100 appends of 40 commits (~1.8 KB each): several 64 KiB segments
  for (let round = 0; round < rounds; round += 1) {
    await Promise.all(Array.from({ length: groups }, (_, g) =>
      commit(`group-${g}`, 'busy', round * 100 + g)));
  }
  await stop(broker);
  const after = await startBroker(`${dir}/rotate-empty`, [storage]);
  await client.connect(after);
  for (let g = 0; g < groups; g += 1) {
    t.equal(await offsetOf(`group-${g}`, 'busy'), (rounds - 1) * 100 + g, `group-${g}`);
  }
  const info = await client.call('groupDescribe', { group: 'members' }) as Message<'groupInfo'>;
  t.equal(info.generation, joined.generation, 'a group\'s generation survives rotations');
  await client.call('topicCreate', { configs: [], topic: 'fresh', partitions: 1 });
  const freshId = await topicIdOf('fresh');
  t.ok(freshId > goneId, `a deleted topic's id is not given again after rotation (${freshId} > ` +
    `${goneId})`);
  await stop(after);
});
