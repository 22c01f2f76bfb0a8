/**
 * Recovery from one power-cut image, checked against the workload's calls (power-cut-workload.ts).
 *
 * At cut k a call is acknowledged when it succeeded with end ≤ k and in flight when
 * start ≤ k < end. Recovery (RegionStore.open on the image) must then give:
 * - the region opens; before format was acknowledged it may instead be refused as not
 *   formatted, or as corrupt superblocks only (a torn first superblock write, nothing else);
 * - superblock: epoch and sequence of the last acknowledged raise, or of the one in flight;
 * - every segment: exactly the entry of its last acknowledged call, or of its call in flight
 *   (a rejected call's entry never appears), so watermarks are ≥ the acknowledged ones and
 *   epochs never fall; entry epochs ≤ the superblock's;
 * - every live segment's bytes under its watermark: verifySegmentData passes (CRCs, dense
 *   offsets, batches end exactly at the watermark) and they are byte for byte the batches the
 *   workload wrote there, so nothing past the watermark and nothing from an earlier use of the
 *   segment is served;
 * - every acknowledged record is there: its segment (unless a free of it had started) holds
 *   the same allocation with a watermark at or above the acknowledged one;
 * - chains: one live segment per (topic, partition, chain position); when positions c and c+1
 *   are both live, c is sealed and c+1 starts at c's offsetLast + 1;
 * - the store moves on: raising the epoch and freeing every live segment overwrite the torn
 *   copy and slots, after which a second open reports no fallback for them.
 */
import { PmqError } from '../../common/errors.js';
import type { SegmentEntry } from '../../common/layout.js';
import {
  RegionMediaError, RegionStore, type SegmentInfo,
} from '../../storage-node/region-store.js';
import { formatEntries } from '../../storage-node/segment-table.js';
import { PowerCutRegion } from './power-cut-region.js';
import type { Allocation, Call, WorkloadRun } from './power-cut-workload.js';

export type Outcome = 'opened' | 'unformatted-blank' | 'unformatted-corrupt' |
  'opened-during-format';

export interface ImageVerdict {
  readonly outcome: Outcome;
  readonly problems: string[];
  /** Fallbacks open reported (torn copies and slots), and in-flight versions recovered. */
  readonly fallbacks: number;
  readonly inFlightRecovered: number;
  readonly recordsAcknowledged: number;
}

function sameEntry(a: SegmentEntry, b: SegmentEntry): boolean {
  return a.segmentIndex === b.segmentIndex && a.generation === b.generation &&
    a.epoch === b.epoch && a.state === b.state && a.topic === b.topic &&
    a.partition === b.partition && a.chainPosition === b.chainPosition &&
    a.baseOffset === b.baseOffset && a.watermark.position === b.watermark.position &&
    a.watermark.offsetLast === b.watermark.offsetLast;
}

const show = (e: SegmentEntry): string => `gen ${e.generation} ${e.state} epoch ${e.epoch} ` +
  `${e.topic}/${e.partition}#${e.chainPosition} base ${e.baseOffset} ` +
  `wm ${e.watermark.position}/${e.watermark.offsetLast}`;

const acknowledged = (c: Call, cut: number): boolean => c.ok === true && c.end <= cut;
const inFlight = (c: Call, cut: number): boolean => c.start <= cut && cut < c.end;

interface Candidate { readonly entry: SegmentEntry; readonly call: Call | null }

/** The entries segment `index` may recover to at `cut`. */
function candidates(run: WorkloadRun, index: number, cut: number): Candidate[] {
  const calls = run.calls.filter((c) => c.ok === true && c.entry?.segmentIndex === index);
  const done = calls.filter((c) => acknowledged(c, cut));
  const last = done[done.length - 1];
  const formatted = formatEntries(index, 0)[1] as SegmentEntry;
  const out: Candidate[] = [last?.entry != null ? { entry: last.entry, call: last } :
    { entry: formatted, call: null }];
  for (const c of calls) {
    if (inFlight(c, cut) && c.entry !== null) out.push({ entry: c.entry, call: c });
  }
  return out;
}

function checkSuperblock(store: RegionStore, run: WorkloadRun, cut: number,
  problems: string[]): void {
  const raises = run.calls.filter((c) => c.kind === 'raiseEpoch' && c.ok === true);
  const done = raises.filter((c) => acknowledged(c, cut));
  const allowed = [{ epoch: done[done.length - 1]?.epoch ?? 0, sequence: 1 + done.length }];
  const flying = raises.find((c) => inFlight(c, cut));
  if (flying !== undefined) allowed.push({ epoch: flying.epoch, sequence: 2 + done.length });
  const { epoch, sequence } = store.superblock;
  if (!allowed.some((a) => a.epoch === epoch && a.sequence === sequence)) {
    problems.push(`superblock epoch ${epoch} sequence ${sequence}, expected one of ` +
      JSON.stringify(allowed));
  }
}

/** The recovered bytes of `info` are exactly `allocation`'s batches up to the watermark. */
function checkData(store: RegionStore, info: SegmentInfo, allocation: Allocation,
  problems: string[]): void {
  const at = `segment ${info.segmentIndex} (${info.topic}/${info.partition}#${info.chainPosition})`;
  try {
    store.verifySegmentData(info.segmentIndex);
  } catch (error) {
    problems.push(`${at}: ${error instanceof Error ? error.message : String(error)}`);
    return;
  }
  const bytes = store.region.view(info.address, info.sizeBytes); // indexed by position
  let position = 0;
  for (const batch of allocation.batches) {
    if (position >= info.watermark.position) break;
    const end = position + batch.bytes.byteLength;
    if (batch.position !== position || end > info.watermark.position) {
      problems.push(`${at}: watermark ${info.watermark.position} cuts the batch at ${position}`);
      return;
    }
    const stored = bytes.subarray(position, end);
    if (Buffer.compare(stored, batch.bytes) !== 0) {
      problems.push(`${at}: the batch at position ${position} differs from the one written`);
      return;
    }
    position = end;
  }
  if (position !== info.watermark.position) {
    problems.push(`${at}: watermark ${info.watermark.position} past the ${position} bytes written`);
  }
}

/** Every acknowledged watermark whose segment was not being freed is at or below the recovered. */
function checkAcknowledged(store: RegionStore, run: WorkloadRun, cut: number,
  owners: ReadonlyMap<number, Allocation | null>, problems: string[]): number {
  let records = 0;
  const latest = new Map<Allocation, Call>();
  for (const c of run.calls) {
    if ((c.kind === 'persistWatermark' || c.kind === 'sealSegment') && acknowledged(c, cut) &&
        c.allocation !== null) latest.set(c.allocation, c);
  }
  for (const [allocation, call] of latest) {
    const freeing = run.calls.some((c) => c.kind === 'freeSegment' &&
      c.allocation === allocation && c.start <= cut);
    if (freeing || call.entry === null) continue;
    const info = store.segment(allocation.segmentIndex);
    const acked = call.entry.watermark;
    if (owners.get(allocation.segmentIndex) !== allocation ||
        info.watermark.position < acked.position || info.watermark.offsetLast < acked.offsetLast) {
      problems.push(`acknowledged ${allocation.topic}/${allocation.partition} up to offset ` +
        `${acked.offsetLast} (segment ${allocation.segmentIndex} at ${acked.position}) lost: ` +
        `recovered ${show(info)}`);
    }
    records += acked.offsetLast - allocation.baseOffset + 1;
  }
  return records;
}

function checkChains(store: RegionStore, problems: string[]): void {
  const live = store.segments().filter((s) => s.state !== 'free');
  const places = new Map<string, SegmentInfo>();
  for (const s of live) {
    const place = `${s.topic}/${s.partition}#${s.chainPosition}`;
    if (places.has(place)) problems.push(`two live segments at ${place}`);
    places.set(place, s);
    if (s.epoch > store.epoch) {
      problems.push(`segment ${s.segmentIndex} epoch ${s.epoch} above the region's ${store.epoch}`);
    }
  }
  for (const s of live) {
    const next = places.get(`${s.topic}/${s.partition}#${s.chainPosition + 1}`);
    if (next === undefined) continue;
    if (s.state !== 'sealed' || next.baseOffset !== s.watermark.offsetLast + 1) {
      problems.push(`chain ${s.topic}/${s.partition}: #${s.chainPosition} ${show(s)} then ` +
        `#${next.chainPosition} ${show(next)}`);
    }
  }
}

/** Raise the epoch, free every live segment, open again: no fallback may remain for them. */
async function moveOn(region: PowerCutRegion, store: RegionStore, problems: string[]):
  Promise<void> {
  const epoch = store.epoch + 1;
  await store.raiseEpoch(epoch);
  const touched = new Set<number>();
  for (const s of store.segments()) {
    if (s.state === 'free') continue;
    await store.freeSegment(s.segmentIndex, epoch);
    touched.add(s.segmentIndex);
  }
  const again = RegionStore.open(region);
  if (again.report.superblockFallback !== null) {
    problems.push(`after raising the epoch: superblock fallback ` +
      JSON.stringify(again.report.superblockFallback));
  }
  for (const f of again.report.entryFallbacks) {
    if (touched.has(f.segmentIndex)) problems.push(`after freeing: fallback ${JSON.stringify(f)}`);
  }
}

function refusal(error: unknown, formatted: boolean): Outcome | string {
  const described = error instanceof PmqError ? `${error.code}: ${error.message}` : String(error);
  if (formatted || !(error instanceof RegionMediaError)) return `open failed: ${described}`;
  if (error.code === 'PMQ_ERR_REGION_NOT_FORMATTED') return 'unformatted-blank';
  const superblocksOnly = error.sites.every((s) => s.what === 'superblock');
  if (error.code === 'PMQ_ERR_REGION_CORRUPT' && superblocksOnly) {
    return 'unformatted-corrupt';
  }
  return `open failed during format: ${described}`;
}

/** Opens `image` as a region, checks it against `run` at `cut`, and moves it on. */
export async function checkImage(image: Uint8Array, cut: number, run: WorkloadRun):
  Promise<ImageVerdict> {
  const problems: string[] = [];
  const verdict = (outcome: Outcome, more: Partial<ImageVerdict> = {}): ImageVerdict =>
    ({ outcome, problems, fallbacks: 0, inFlightRecovered: 0, recordsAcknowledged: 0, ...more });
  const format = run.calls[0];
  const formatted = format !== undefined && acknowledged(format, cut);
  const region = new PowerCutRegion({ sizeBytes: image.byteLength, initial: image, path: 'image' });
  let store: RegionStore;
  try {
    store = RegionStore.open(region);
  } catch (error) {
    const outcome = refusal(error, formatted);
    if (outcome.includes(' ')) problems.push(outcome);
    return verdict(outcome.includes(' ') ? 'opened' : outcome as Outcome);
  }
  const fallbacks = store.report.entryFallbacks.length +
    (store.report.superblockFallback === null ? 0 : 1);
  if (!formatted) {
    if (store.epoch !== 0 || store.segments().some((s) => s.state !== 'free')) {
      problems.push('opened during format with an epoch or a live segment');
    }
    return verdict('opened-during-format', { fallbacks });
  }
  checkSuperblock(store, run, cut, problems);
  const { owners, inFlightRecovered } = checkSegments(store, run, cut, problems);
  const recordsAcknowledged = checkAcknowledged(store, run, cut, owners, problems);
  checkChains(store, problems);
  if (problems.length === 0) await moveOn(region, store, problems);
  return verdict('opened', { fallbacks, inFlightRecovered, recordsAcknowledged });
}

/** Each segment recovered to an allowed entry; its data checked. Returns who owns what. */
function checkSegments(store: RegionStore, run: WorkloadRun, cut: number, problems: string[]):
  { owners: Map<number, Allocation | null>; inFlightRecovered: number } {
  const owners = new Map<number, Allocation | null>();
  let inFlightRecovered = 0;
  for (const info of store.segments()) {
    const allowed = candidates(run, info.segmentIndex, cut);
    const match = allowed.find((c) => sameEntry(c.entry, info));
    if (match === undefined) {
      problems.push(`segment ${info.segmentIndex}: recovered ${show(info)}, expected ` +
        allowed.map((c) => show(c.entry)).join(' or '));
      continue;
    }
    if (match !== allowed[0]) inFlightRecovered += 1;
    const allocation = info.state === 'free' ? null : match.call?.allocation ?? null;
    owners.set(info.segmentIndex, allocation);
    if (allocation !== null) checkData(store, info, allocation, problems);
  }
  return { owners, inFlightRecovered };
}
