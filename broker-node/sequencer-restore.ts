/**
 * Recovery: rebuild a partition's chain of segments from the storage nodes' segment tables.
 * The tables are input from peers, so every rule is checked and a violation is answered with
 * PMQ_ERR_CHAIN_INVALID (the partition is not served), never an invariant abort.
 *
 * Because the sequencer persists a segment only after every earlier one is sealed durably,
 * a valid chain is: sealed segments whose offsets follow one another, then at most one
 * unsealed segment with data or not (it becomes the active segment again, appending at its
 * durable watermark: bytes past it are garbage from writes never acknowledged), then only
 * empty unsealed segments. Those were allocated for leases whose batches were never durable;
 * they are orphans that the broker frees before allocating their chain places again.
 */
import { LIMITS } from '../common/limits.js';
import { SequencedSegment } from './sequencer-segment.js';
import { SequencerError, type RestoredSegment, type SegmentId } from './sequencer-types.js';

export interface RestoredChain {
  readonly segments: SequencedSegment[];
  readonly orphans: SegmentId[];
}

function chainInvalid(what: string, segment: RestoredSegment): SequencerError {
  return new SequencerError('PMQ_ERR_CHAIN_INVALID', `segment chain: ${what} (segment ` +
    `${segment.segmentId}, chainPosition ${segment.chainPosition})`);
}

function checkSegment(segment: RestoredSegment): void {
  const { baseOffset, sizeBytes, watermark } = segment;
  if (!Number.isSafeInteger(sizeBytes) || sizeBytes < LIMITS.segmentSizeBytesMin ||
      sizeBytes > LIMITS.segmentSizeBytesMax) {
    throw chainInvalid(`sizeBytes ${sizeBytes} outside ${LIMITS.segmentSizeBytesMin}..` +
      `${LIMITS.segmentSizeBytesMax}`, segment);
  }
  if (!Number.isSafeInteger(baseOffset) || baseOffset < 0 ||
      !Number.isSafeInteger(segment.chainPosition) || segment.chainPosition < 0 ||
      segment.chainPosition > LIMITS.chainPositionMax) {
    throw chainInvalid('baseOffset or chainPosition not a valid integer', segment);
  }
  const { position, offsetLast } = watermark;
  if (!Number.isSafeInteger(position) || position < 0 || position > sizeBytes) {
    throw chainInvalid(`watermark position ${position} outside 0..${sizeBytes}`, segment);
  }
  const fits = position === 0 ? offsetLast === baseOffset - 1
    : Number.isSafeInteger(offsetLast) && offsetLast >= baseOffset;
  if (!fits) {
    throw chainInvalid(`watermark offsetLast ${offsetLast} does not fit position ${position} ` +
      `and baseOffset ${baseOffset}`, segment);
  }
}

function checkOrder(sorted: readonly RestoredSegment[]): void {
  const ids = new Set<SegmentId>();
  sorted.forEach((segment, index) => {
    checkSegment(segment);
    if (ids.has(segment.segmentId)) throw chainInvalid('segment listed twice', segment);
    ids.add(segment.segmentId);
    const before = sorted[index - 1];
    if (before !== undefined && segment.chainPosition !== before.chainPosition + 1) {
      throw chainInvalid(`gap or duplicate after chainPosition ${before.chainPosition}`, segment);
    }
  });
}

/** Validates the entries of one partition (any order) and rebuilds its chain. */
export function restoreChain(restored: readonly RestoredSegment[]): RestoredChain {
  const sorted = [...restored].sort((a, b) => a.chainPosition - b.chainPosition);
  checkOrder(sorted);
  const segments: SequencedSegment[] = [];
  const orphans: SegmentId[] = [];
  for (const entry of sorted) {
    const before = segments[segments.length - 1];
    const open = before !== undefined && before.state !== 'sealed';
    if (open) {
      // Past the first unsealed segment: only empty, unsealed leftovers of lost leases.
      if (entry.sealed || entry.watermark.position > 0) {
        throw chainInvalid('data or a seal after an unsealed segment', entry);
      }
      orphans.push(entry.segmentId);
      continue;
    }
    if (before !== undefined && entry.baseOffset !== before.durable.offsetLast + 1) {
      throw chainInvalid(`baseOffset ${entry.baseOffset} does not follow offsetLast ` +
        `${before.durable.offsetLast} of the sealed segment before it`, entry);
    }
    segments.push(new SequencedSegment(entry, entry.watermark, entry.sealed ? 'sealed' : 'active'));
  }
  return { segments, orphans };
}
