/**
 * `pmq quarantine list|free`: segments that no topic of the broker's metadata claims. The
 * broker never frees them by itself (its metadata may be stale, empty or another broker's, and
 * the segment hold acknowledged records: docs/broker.md, "Quarantine"); an operator looks at
 * them (`list`, `pmq inspect` on a copy of the region) and frees one at a time (`free --yes`).
 */
import { InvalidArgumentError, type Command } from 'commander';

import type { QuarantinedSegment } from '../clients/index.js';
import { addClientOptions, clientLogger, withClient, type ClientCliOptions } from
  './client-options.js';
import { formatTable } from './topic.js';

function segmentArgument(text: string): { nodeId: number; segmentIndex: number } {
  const match = /^(\d{1,15})\/(\d{1,15})$/.exec(text);
  if (match === null) {
    throw new InvalidArgumentError(`${JSON.stringify(text)} is not NODE/SEGMENT (e.g. 1/17, ` +
      'as `pmq quarantine list` prints them)');
  }
  return { nodeId: Number(match[1]), segmentIndex: Number(match[2]) };
}

function printQuarantined(segments: QuarantinedSegment[], json: boolean): void {
  if (json) {
    process.stdout.write(`${JSON.stringify(segments)}\n`);
    return;
  }
  if (segments.length === 0) {
    process.stderr.write('pmq: no quarantined segments\n');
    return;
  }
  process.stdout.write(formatTable(['SEGMENT', 'TOPIC', 'PARTITION', 'CHAIN', 'OFFSETS',
    'BYTES', 'STATE', 'WHY'], segments.map((s) => [`${s.nodeId}/${s.segmentIndex}`, s.topic,
    s.partition, s.chainPosition, s.offsetLast < s.baseOffset ? 'none'
      : `${s.baseOffset}..${s.offsetLast}`, s.position, s.sealed ? 'sealed' : 'active',
    s.reason])));
}

export function registerQuarantineCommand(program: Command): void {
  const quarantine = program.command('quarantine')
    .description('segments no topic claims: the broker keeps them until you free them');
  addClientOptions(quarantine.command('list').description('list quarantined segments')
    .option('--json', 'print JSON instead of a table', false))
    .action(async (opts: ClientCliOptions & { json: boolean }) => {
      await withClient(opts, clientLogger(opts), async (client) =>
        printQuarantined(await client.admin().listQuarantined(), opts.json));
    });
  addClientOptions(quarantine.command('free')
    .description('free one quarantined segment: its records are gone for good')
    .argument('<segment>', 'NODE/SEGMENT, as `pmq quarantine list` prints it', segmentArgument)
    .option('--yes', 'really free it (without it nothing is done)', false))
    .action(async (segment: { nodeId: number; segmentIndex: number },
      opts: ClientCliOptions & { yes: boolean }) => {
      const name = `${segment.nodeId}/${segment.segmentIndex}`;
      if (!opts.yes) {
        process.stderr.write(`pmq: not freeing ${name}: its records would be gone for good; ` +
          'check it with `pmq quarantine list` and run again with --yes\n');
        process.exitCode = 1;
        return;
      }
      await withClient(opts, clientLogger(opts), (client) =>
        client.admin().freeQuarantined(segment.nodeId, segment.segmentIndex));
      process.stderr.write(`pmq: segment ${name} freed\n`);
    });
}
