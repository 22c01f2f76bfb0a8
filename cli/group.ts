/**
 * `pmq group list|describe|reset-offsets|delete`: consumer groups, as kafka-consumer-groups and
 * rpk group (clients/admin.ts). describe shows the state, generation, members with their
 * partitions, and per partition the committed offset, high watermark and lag. reset-offsets
 * only prints the plan unless --execute is given (as kafka-consumer-groups' --dry-run default),
 * and the broker takes it only while the group has no members (PMQ_ERR_GROUP_NOT_EMPTY).
 */
import { InvalidArgumentError, Option, type Command } from 'commander';

import {
  offsetsForTimes, type Client, type GroupDescription, type TopicDescription,
} from '../clients/index.js';
import { addClientOptions, clientLogger, withClient, type ClientCliOptions } from
  './client-options.js';
import { integerArgument } from './options.js';
import { formatTable } from './topic.js';

interface JsonOption { json: boolean }

interface ResetOptions extends ClientCliOptions {
  topic?: string;
  allTopics: boolean;
  toEarliest: boolean;
  toLatest: boolean;
  toOffset?: number;
  toDatetime?: number;
  execute: boolean;
  dryRun: boolean;
}

interface PartitionLag { topic: string; partition: number; committed: number;
  highWatermark: number; lag: number | null; member: string }

function run(opts: ClientCliOptions, body: (client: Client) => Promise<void>): Promise<void> {
  return withClient(opts, clientLogger(opts), body);
}

/** ISO 8601 (2026-12-06T12:00:00Z) or milliseconds since the epoch. */
function datetimeArgument(text: string): number {
  const ms = /^\d+$/.test(text) ? Number(text) : Date.parse(text);
  if (!Number.isSafeInteger(ms) || ms < 0) {
    throw new InvalidArgumentError('--to-datetime takes an ISO 8601 date-time ' +
      '(2026-12-06T12:00:00Z) or milliseconds since the epoch');
  }
  return ms;
}

/** Every partition of the group's topics (committed or assigned), with lag. */
async function lagOf(client: Client, group: GroupDescription): Promise<PartitionLag[]> {
  const topics = [...new Set([...group.offsets.map((o) => o.topic),
    ...group.members.flatMap((m) => m.partitions.map((p) => p.topic))])].sort();
  const rows: PartitionLag[] = [];
  for (const topic of topics) {
    const description = await client.admin().describeTopic(topic).catch(() => null);
    if (description === null) continue; // deleted meanwhile
    for (const { partition, highWatermark } of description.partitions) {
      const committed = group.offsets.find((o) => o.topic === topic &&
        o.partition === partition)?.offset ?? -1;
      const member = group.members.find((m) => m.partitions.some((p) => p.topic === topic &&
        p.partition === partition))?.memberId ?? '-';
      rows.push({ topic, partition, committed, highWatermark, member,
        lag: committed < 0 ? null : Math.max(0, highWatermark - committed) });
    }
  }
  return rows;
}

async function describe(client: Client, name: string, json: boolean): Promise<void> {
  const group = await client.admin().describeGroup(name);
  const lags = await lagOf(client, group);
  if (json) {
    process.stdout.write(`${JSON.stringify({ ...group, partitions: lags })}\n`);
    return;
  }
  process.stdout.write(`group ${group.group}: ${group.state}, generation ${group.generation}` +
    `${group.assignor === '' ? '' : `, assignor ${group.assignor}`}, ` +
    `${group.members.length} members\n`);
  if (group.members.length > 0) {
    process.stdout.write(formatTable(['MEMBER', 'INSTANCE', 'CLIENT', 'PARTITIONS'],
      group.members.map((m) => [m.memberId, m.groupInstanceId || '-', m.clientId,
        m.partitions.map((p) => `${p.topic}/${p.partition}`).join(',') || '-'])));
  }
  process.stdout.write(formatTable(['TOPIC', 'PARTITION', 'COMMITTED', 'HIGH-WATERMARK', 'LAG',
    'MEMBER'], lags.map((l) => [l.topic, l.partition, l.committed < 0 ? '-' : l.committed,
    l.highWatermark, l.lag ?? '-', l.member])));
}

/** The first offset whose record's timestamp is ≥ ms (offsetsForTimes), or the high watermark. */
async function offsetForTime(client: Client, topic: string, partition: number,
  info: TopicDescription['partitions'][number], ms: number): Promise<number> {
  const found = (await offsetsForTimes(client, topic, ms, [partition])).get(partition);
  return found ?? info.highWatermark;
}

async function resetPlan(client: Client, group: GroupDescription, opts: ResetOptions):
  Promise<{ topic: string; partition: number; from: number; to: number }[]> {
  const topics = opts.allTopics ? [...new Set(group.offsets.map((o) => o.topic))].sort()
    : [opts.topic!];
  const plan = [];
  for (const topic of topics) {
    const description = await client.admin().describeTopic(topic);
    for (const info of description.partitions) {
      const from = group.offsets.find((o) => o.topic === topic &&
        o.partition === info.partition)?.offset ?? -1;
      const to = opts.toEarliest ? info.logStart : opts.toLatest ? info.highWatermark
        : opts.toOffset !== undefined
          ? Math.max(info.logStart, Math.min(info.highWatermark, opts.toOffset))
          : await offsetForTime(client, topic, info.partition, info, opts.toDatetime!);
      plan.push({ topic, partition: info.partition, from, to });
    }
  }
  return plan;
}

async function resetOffsets(client: Client, name: string, opts: ResetOptions): Promise<void> {
  const targets = [opts.toEarliest, opts.toLatest, opts.toOffset !== undefined,
    opts.toDatetime !== undefined].filter(Boolean).length;
  if (targets !== 1) {
    throw new InvalidArgumentError('give exactly one of --to-earliest, --to-latest, ' +
      '--to-offset N, --to-datetime T');
  }
  if ((opts.topic === undefined) === !opts.allTopics) {
    throw new InvalidArgumentError('give --topic NAME or --all-topics');
  }
  const group = await client.admin().describeGroup(name).catch(() => ({ group: name,
    state: 'Empty', generation: 0, assignor: '', members: [], offsets: [] }));
  if (group.members.length > 0) {
    process.stderr.write(`pmq: group ${name} has ${group.members.length} active members: ` +
      'stop them first (the broker refuses the reset while any reads)\n');
  }
  const plan = await resetPlan(client, group, opts);
  process.stdout.write(formatTable(['TOPIC', 'PARTITION', 'COMMITTED', 'NEW-OFFSET'],
    plan.map((p) => [p.topic, p.partition, p.from < 0 ? '-' : p.from, p.to])));
  if (!opts.execute) {
    process.stderr.write('pmq: dry run: nothing changed (add --execute to reset)\n');
    return;
  }
  await client.admin().setGroupOffsets(name, plan.map(({ topic, partition, to }) =>
    ({ topic, partition, offset: to })));
  process.stderr.write(`pmq: group ${name}: ${plan.length} offsets reset\n`);
}

export function registerGroupCommand(program: Command): void {
  const group = program.command('group')
    .description('list, describe, reset the offsets of and delete consumer groups');
  addClientOptions(group.command('list').description('groups with members or committed ' +
    'offsets').option('--json', 'print JSON instead of a table', false))
    .action(async (opts: ClientCliOptions & JsonOption) => {
      await run(opts, async (client) => {
        const groups = await client.admin().listGroups();
        if (opts.json) process.stdout.write(`${JSON.stringify(groups)}\n`);
        else if (groups.length === 0) process.stderr.write('pmq: no groups\n');
        else {
          process.stdout.write(formatTable(['GROUP', 'STATE', 'GENERATION', 'MEMBERS'],
            groups.map((g) => [g.group, g.state, g.generation, g.members])));
        }
      });
    });
  addClientOptions(group.command('describe').description('state, generation, members and ' +
    'their partitions; committed offset, high watermark and lag per partition')
    .argument('<group>', 'group name').option('--json', 'print JSON instead of tables', false))
    .action(async (name: string, opts: ClientCliOptions & JsonOption) => {
      await run(opts, (client) => describe(client, name, opts.json));
    });
  addClientOptions(group.command('reset-offsets')
    .description('set a group\'s committed offsets (only while it has no members); prints ' +
      'the plan, changes nothing without --execute')
    .argument('<group>', 'group name')
    .option('--topic <name>', 'the topic whose offsets to reset')
    .option('--all-topics', 'every topic the group has committed offsets for', false)
    .option('--to-earliest', 'the log start of each partition', false)
    .option('--to-latest', 'the high watermark of each partition', false)
    .addOption(new Option('--to-offset <n>', 'this offset (clamped to what each partition ' +
      'holds)').argParser(integerArgument('--to-offset', 0, Number.MAX_SAFE_INTEGER)))
    .addOption(new Option('--to-datetime <time>', 'the first record at or after this time: ' +
      'ISO 8601 or ms since the epoch').argParser(datetimeArgument))
    .option('--dry-run', 'print the plan only (the default)', true)
    .option('--execute', 'reset the offsets', false))
    .action(async (name: string, opts: ResetOptions) => {
      await run(opts, (client) => resetOffsets(client, name, opts));
    });
  addClientOptions(group.command('delete').description('delete a group\'s committed offsets ' +
    '(only while it has no members)').argument('<group>', 'group name'))
    .action(async (name: string, opts: ClientCliOptions) => {
      await run(opts, (client) => client.admin().deleteGroup(name));
      process.stderr.write(`pmq: group ${name} deleted\n`);
    });
}
