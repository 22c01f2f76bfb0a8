/**
 * `pmq inspect REGION`: an offline, read-only dump of a storage node's region: superblock,
 * segment table, and every batch of every live segment up to its durable watermark, each one
 * CRC- and structure-checked (cli/region-inspector.ts). Text for people, `--json` for scripts
 * (JSON lines, streamed: one object per superblock, segment, batch, record and problem, then a
 * summary). Exit status 1 when any check failed, with a one-line summary on stderr.
 */
import type { Command } from 'commander';

import { PmqError } from '../common/errors.js';
import type { DecodedRecord } from '../common/record-batch/index.js';
import { formatBytes } from '../common/units.js';
import {
  inspectRegion, type BatchSummary, type InspectProblem, type InspectTotals, type InspectVisitor,
  type RegionSummary, type SegmentSummary,
} from './region-inspector.js';
import { textPieces, toJsonRecord } from './record-format.js';

interface InspectCliOptions { json: boolean; records: boolean }

function out(text: string | Buffer): void {
  if (process.stdout.destroyed) process.exit(0);  // the reader went away (EPIPE): stop walking
  process.stdout.write(text);
}

function describeSegment(s: SegmentSummary): string {
  return `segment ${s.segmentIndex} (${s.topic}/${s.partition} chain ${s.chainPosition})`;
}

/** Human-readable lines; the current segment's name prefixes record lines. */
function textVisitor(): InspectVisitor {
  let current: SegmentSummary | null = null;
  return {
    region(r: RegionSummary): void {
      const sb = r.superblock;
      out(`region ${r.path}: ${formatBytes(r.sizeBytes)}, ${r.backing}, durability ` +
        `${r.durability}\n` +
        `superblock: copy ${r.superblockCopy} (sequence ${sb.sequence}), region id ` +
        `${sb.regionId}, node ${sb.nodeId}, epoch ${sb.epoch}, created ` +
        `${new Date(sb.createdAtMs).toISOString()}\n` +
        `segment table: ${sb.segmentCount} entries, segments of ` +
        `${formatBytes(sb.segmentSizeBytesMin)}..${formatBytes(sb.segmentSizeBytes)} ` +
        `(${sb.segmentCount - r.segmentsFree} live, ${r.segmentsFree} free), table at ` +
        `${sb.tableAddress}, data at ${sb.dataAddress}\n`);
      for (const fallback of r.fallbacks) out(`note: ${fallback}\n`);
    },
    segment(s: SegmentSummary): void {
      current = s;
      out(`${describeSegment(s)}: ${s.state}, base offset ${s.baseOffset}, watermark ` +
        `position ${s.watermark.position} offsetLast ${s.watermark.offsetLast}, address ` +
        `${s.address}, size ${formatBytes(s.sizeBytes)}, generation ${s.generation}, epoch ` +
        `${s.epoch}\n`);
    },
    batch(b: BatchSummary, records: DecodedRecord[] | null): void {
      out(`  batch at ${b.position}: offsets ${b.baseOffset}..${b.lastOffset}, ${b.records} ` +
        `records, ${b.sizeBytes} bytes${b.control ? ', control' : ''}, crc ok\n`);
      for (const record of b.control ? [] : records ?? []) {
        out(Buffer.concat([Buffer.from(`    ${record.offset}\t`),
          ...textPieces(record, true)]));
      }
    },
    problem(p: InspectProblem): void {
      const where = current?.segmentIndex === p.segmentIndex ? '' :
        `segment ${p.segmentIndex} `;
      out(`  FAILED ${where}at position ${p.position} (address ${p.address}): ${p.code}: ` +
        `${p.problem}\n`);
    },
  };
}

function jsonLine(value: object): void {
  out(`${JSON.stringify(value)}\n`);
}

function jsonVisitor(): InspectVisitor {
  let current: SegmentSummary | null = null;
  return {
    region: (r) => jsonLine({ kind: 'region', ...r }),
    segment(s): void {
      current = s;
      jsonLine({ kind: 'segment', ...s });
    },
    batch(b, records): void {
      jsonLine({ kind: 'batch', ...b });
      for (const record of b.control ? [] : records ?? []) {
        jsonLine({ kind: 'record', segmentIndex: b.segmentIndex,
          ...toJsonRecord(current?.topic ?? '', current?.partition ?? -1, record) });
      }
    },
    problem: (p) => jsonLine({ kind: 'problem', ...p }),
  };
}

/** Remembers the first problem for the one-line summary on stderr. */
function firstProblem(visitor: InspectVisitor, segments: Map<number, SegmentSummary>):
  { visitor: InspectVisitor; first: () => string | null } {
  let first: string | null = null;
  return {
    visitor: { ...visitor,
      segment(s): void {
        segments.set(s.segmentIndex, s);
        visitor.segment(s);
      },
      problem(p): void {
        const segment = segments.get(p.segmentIndex);
        first ??= `${segment === undefined ? `segment ${p.segmentIndex}` :
          describeSegment(segment)} at position ${p.position}: ${p.code}`;
        visitor.problem(p);
      } },
    first: () => first,
  };
}

function summarize(path: string, totals: InspectTotals, first: string | null,
  json: boolean): void {
  const ok = totals.problems === 0;
  if (json) {
    jsonLine({ kind: 'summary', ok, ...totals });
  } else {
    out(`summary: ${totals.segments} live segments, ${totals.batches} batches, ` +
      `${totals.records} records, ${totals.sizeBytes} bytes; ` + (ok ?
      'every CRC and structure check passed\n' : `${totals.problems} problem(s)\n`));
  }
  if (!ok) {
    throw new PmqError('PMQ_ERR_REGION_CORRUPT', `region ${path}: ${totals.problems} ` +
      `problem(s), the first in ${first ?? '?'} (see the ${json ? 'problem' : 'FAILED'} ` +
      'lines in the output)');
  }
}

export function registerInspectCommand(program: Command): void {
  program.command('inspect')
    .description('offline, read-only: dump a region (superblock, segment table, batches) and ' +
      'check every batch CRC; refuses a region a live storage node holds')
    .argument('<region>', 'region file (the storage node\'s --path)')
    .option('--json', 'JSON lines: region, segment, batch, record, problem, summary', false)
    .option('--records', 'print the records of every batch too', false)
    .action((path: string, opts: InspectCliOptions) => {
      const { visitor, first } = firstProblem(opts.json ? jsonVisitor() : textVisitor(),
        new Map());
      const totals = inspectRegion(path, { records: opts.records }, visitor);
      summarize(path, totals, first(), opts.json);
    });
}
