/**
 * The consumer-group requests (wire v10; docs/wire-protocol.md, "Consumer groups"): join, sync,
 * heartbeat and leave go to the coordinator (group-coordinator.ts); list, describe and delete
 * combine it with the committed offsets of the metadata store. ACLs as Kafka's: membership
 * needs `read` on the group and on every topic subscribed, list and describe `describe`,
 * delete `delete`.
 */
import { PmqError } from '../common/errors.js';
import type { Resource } from '../common/auth/acl.js';
import type { GroupCoordinator } from './group-coordinator.js';
import { topicOf, type Serve, type ServerContext } from './server.js';

const groupOf = (name: string): Resource => ({ type: 'group', name });

export function registerGroupHandlers(serve: Serve, context: ServerContext,
  groups: GroupCoordinator): void {
  const { access, metadata } = context;
  serve('groupJoin', async (_ep, r, session) => {
    access.check(session, groupOf(r.group), 'read');
    for (const { topic } of r.topics) {
      access.check(session, topicOf(topic), 'read');
      if (!context.topics.has(topic)) {
        throw new PmqError('PMQ_ERR_UNKNOWN_TOPIC', `topic ${topic} does not exist: create it ` +
          'first, or check the name');
      }
    }
    const joined = await groups.join({ ...r, assignors: r.assignors.map((a) => a.name),
      topics: [...new Set(r.topics.map((t) => t.topic))] });
    return { kind: 'groupJoined', body: joined };
  });
  serve('groupSync', (_ep, r, session) => {
    access.check(session, groupOf(r.group), 'read');
    const partitions = groups.sync(r.group, r.memberId, r.generation);
    return { kind: 'groupAssignment', body: { generation: r.generation,
      partitions: partitions.map((tp) => ({ ...tp })) } };
  });
  serve('groupHeartbeat', (_ep, r, session) => {
    access.check(session, groupOf(r.group), 'read');
    groups.heartbeat(r.group, r.memberId, r.generation);
    return { kind: 'done', body: {} };
  });
  serve('groupLeave', (_ep, r, session) => {
    access.check(session, groupOf(r.group), 'read');
    groups.leave(r.group, r.memberId);
    return { kind: 'done', body: {} };
  });
  serve('groupList', (_ep, _r, session) => {
    const names = new Set([...metadata.groups(), ...groups.activeGroups()]);
    return { kind: 'groups', body: { groups: [...names].sort()
      .filter((name) => access.may(session, groupOf(name), 'describe'))
      .map((name) => {
        const { state, generation, members } = groups.describe(name);
        return { group: name, state, generation, members: members.length };
      }) } };
  });
  serve('groupDescribe', (_ep, r, session) => {
    access.check(session, groupOf(r.group), 'describe');
    const description = groups.describe(r.group);
    const offsets = metadata.groupOffsets(r.group);
    if (description.members.length === 0 && offsets.length === 0 &&
        metadata.groupGeneration(r.group) === 0) {
      throw new PmqError('PMQ_ERR_UNKNOWN_GROUP', `group ${r.group} has no members and no ` +
        'committed offsets: `pmq group list` shows the groups');
    }
    return { kind: 'groupInfo', body: { ...description,
      members: description.members.map(({ memberId, groupInstanceId, clientId }) =>
        ({ memberId, groupInstanceId, clientId })),
      assignments: description.members.flatMap((m) => m.partitions.map((tp) =>
        ({ ...tp, memberId: m.memberId }))),
      offsets: offsets.map(({ topic, partition, offset }) => ({ topic, partition, offset })) } };
  });
  serve('groupDelete', async (_ep, r, session) => {
    access.check(session, groupOf(r.group), 'delete');
    if (groups.active(r.group)) {
      throw new PmqError('PMQ_ERR_GROUP_NOT_EMPTY', `group ${r.group} has members: stop them ` +
        '(or wait for their session timeout), then delete it');
    }
    if (!metadata.groups().includes(r.group)) {
      throw new PmqError('PMQ_ERR_UNKNOWN_GROUP', `group ${r.group} has no committed offsets: ` +
        'nothing to delete');
    }
    await metadata.deleteGroup(r.group);
    groups.forget(r.group);
    context.log.info({ group: r.group }, 'group deleted');
    return { kind: 'done', body: {} };
  });
}
