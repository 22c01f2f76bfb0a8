/**
 * `pmq topic create|delete|list|describe|alter-config`: topic administration, one broker
 * request each
 * (clients/admin.ts). Text output is a small table on stdout; `--json` prints one JSON
 * document instead, for scripts.
 */
import { InvalidArgumentError, type Command } from 'commander';

import { BROKER_LIMITS } from '../common/limits.js';
import type { Client, TopicDescription, TopicListing } from '../clients/index.js';
import { addClientOptions, clientLogger, withClient, type ClientCliOptions } from
  './client-options.js';
import { integerArgument } from './options.js';
import { plural } from './report.js';

interface JsonOption { json: boolean }
interface ConfigOption { config: Record<string, string> }

/** `--config key=value`, repeatable (Kafka's kafka-topics --config). */
function collectConfig(text: string, previous: Record<string, string>): Record<string, string> {
  const at = text.indexOf('=');
  if (at <= 0) {
    throw new InvalidArgumentError(`--config takes key=value (e.g. retention.ms=3600000), ` +
      `got ${JSON.stringify(text)}`);
  }
  return { ...previous, [text.slice(0, at)]: text.slice(at + 1) };
}

const CONFIG_HELP = 'a topic config key=value, repeatable: retention.ms (ms; -1 unlimited), ' +
  'retention.bytes (per partition; -1 unlimited)';

function run(opts: ClientCliOptions, body: (client: Client) => Promise<void>): Promise<void> {
  return withClient(opts, clientLogger(opts), body);
}

/** Columns padded to their widest cell, two spaces apart. */
export function formatTable(header: string[], rows: (string | number)[][]): string {
  const cells = [header, ...rows.map((row) => row.map(String))];
  const widths = header.map((_, column) =>
    Math.max(...cells.map((row) => (row[column] ?? '').length)));
  return cells.map((row) => row.map((cell, column) =>
    column === row.length - 1 ? cell : cell.padEnd(widths[column] ?? 0)).join('  '))
    .join('\n') + '\n';
}

function printList(topics: TopicListing[], json: boolean): void {
  const sorted = [...topics].sort((a, b) => a.topic.localeCompare(b.topic));
  if (json) {
    process.stdout.write(`${JSON.stringify(sorted)}\n`);
  } else if (sorted.length === 0) {
    process.stderr.write('pmq: no topics (create one with pmq topic create NAME ' +
      '--partitions N)\n');
  } else {
    process.stdout.write(formatTable(['TOPIC', 'PARTITIONS'],
      sorted.map(({ topic, partitions }) => [topic, partitions])));
  }
}

function printDescription(description: TopicDescription, json: boolean): void {
  if (json) {
    process.stdout.write(`${JSON.stringify(description)}\n`);
    return;
  }
  const total = description.partitions.reduce((sum, p) => sum + p.highWatermark, 0);
  process.stdout.write(`topic ${description.topic}: ${description.partitions.length} ` +
    `partitions, ${total} records written\n`);
  process.stdout.write(`configs: ${description.configs.map((c) => `${c.key}=${c.value}` +
    (c.isDefault ? ' (default)' : '')).join(', ')}\n`);
  process.stdout.write(formatTable(['PARTITION', 'LOG-START', 'HIGH-WATERMARK', 'BYTES',
    'SEGMENTS'], description.partitions.map((p) => [p.partition, p.logStart, p.highWatermark,
    p.bytes, p.segments])));
}

function addJson(command: Command): Command {
  return command.option('--json', 'print JSON instead of a table', false);
}

export function registerTopicCommand(program: Command): void {
  const topic = program.command('topic')
    .description('create, delete, list, describe topics and alter their configs');
  addClientOptions(topic.command('create').description('create a topic')
    .argument('<name>', 'topic name: 1..249 of [a-zA-Z0-9._-], not . or ..')
    .option('-p, --partitions <n>', 'number of partitions (default 1, as rpk)',
      integerArgument('--partitions', 1, BROKER_LIMITS.partitionsPerTopicMax), 1)
    .option('--config <key=value>', CONFIG_HELP, collectConfig, {}))
    .action(async (name: string, opts: ClientCliOptions & { partitions: number } &
      ConfigOption) => {
      let warning: string | null = null;
      await run(opts, async (client) => {
        ({ warning } = await client.admin().createTopic(name,
          { partitions: opts.partitions, configs: opts.config }));
      });
      process.stderr.write(`pmq: topic ${name} created with ` +
        `${plural(opts.partitions, 'partition')}\n`);
      if (warning !== null) process.stderr.write(`pmq: warning: ${warning}\n`);
    });
  addClientOptions(topic.command('alter-config')
    .description('set topic configs (the others stay): durable at the broker on return')
    .argument('<name>', 'topic name')
    .requiredOption('--config <key=value>', CONFIG_HELP, collectConfig, {}))
    .action(async (name: string, opts: ClientCliOptions & ConfigOption) => {
      await run(opts, (client) => client.admin().alterTopicConfig(name, opts.config));
      process.stderr.write(`pmq: topic ${name}: ${Object.entries(opts.config)
        .map(([key, value]) => `${key}=${value}`).join(', ')}\n`);
    });
  addClientOptions(topic.command('delete').description('delete a topic and its records')
    .argument('<name>', 'topic name'))
    .action(async (name: string, opts: ClientCliOptions) => {
      await run(opts, (client) => client.admin().deleteTopic(name));
      process.stderr.write(`pmq: topic ${name} deleted\n`);
    });
  addClientOptions(addJson(topic.command('list').description('list topics')))
    .action(async (opts: ClientCliOptions & JsonOption) => {
      await run(opts, async (client) => printList(await client.admin().listTopics(), opts.json));
    });
  addClientOptions(addJson(topic.command('describe')
    .description('a topic\'s configs and, per partition, log start (first offset held), ' +
      'high watermark (next offset), bytes and segments')
    .argument('<name>', 'topic name')))
    .action(async (name: string, opts: ClientCliOptions & JsonOption) => {
      await run(opts, async (client) =>
        printDescription(await client.admin().describeTopic(name), opts.json));
    });
}
