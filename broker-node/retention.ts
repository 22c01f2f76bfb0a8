/**
 * Retention (docs/broker.md, "Retention"): frees each partition's oldest segments as its
 * topic's `retention.ms` and `retention.bytes` say (topic-config.ts; Kafka's meanings), so a
 * region that takes a steady stream never fills.
 *
 * A pass visits every partition and, per partition, looks at its oldest segment while the
 * sequencer says it may go (sealed durably and not the last: Sequencer.oldestRetirable): it
 * goes when the partition would still hold at least retention.bytes without it, or when its
 * newest record's timestamp is more than retention.ms before the clock. Segments go strictly
 * oldest first and one at a time (Partition.retireOldest), so what remains is always a suffix
 * of the chain and the log start (its first baseOffset) only moves forward, at every moment
 * and after any crash: recovery rebuilds it from the segments left.
 *
 * Time: the clock is injected (wall-clock milliseconds: record timestamps are wall-clock).
 * A segment's newest record timestamp is the largest maxTimestamp of its batch headers, read
 * once per segment through the broker's read grant and remembered; a segment with no record
 * timestamp (only control batches) holds no records and counts as expired. A clock that jumps
 * back only makes segments look younger: nothing goes early. A producer's timestamp in the
 * future keeps its segment (as in Kafka, where message.timestamp.difference.max.ms bounds it).
 *
 * Concurrency: JS thread; one pass at a time (a pass asked for while one runs returns it).
 * Failures (a storage node away) leave the segment for the next pass.
 */
import type { Logger } from '../common/log.js';
import type { MetadataStore } from './metadata-store.js';
import type { Partition } from './partition.js';
import { walkSegmentHeaders } from './producer-scan.js';
import type { SegmentId, SegmentView } from './sequencer-types.js';
import { effectiveRetention, type RetentionSettings } from './topic-config.js';
import { PRODUCER_LIMITS } from '../common/limits.js';

export interface RetentionDeps {
  readonly topics: Map<string, Partition[]>;
  readonly metadata: MetadataStore;
  /** Wall-clock milliseconds (Date.now in production; a fake one in tests). */
  readonly clock: () => number;
  readonly defaults: RetentionSettings;
  readonly log: Logger;
}

export interface RetentionPass {
  /** Segments freed in this pass. */
  readonly freed: number;
  /** Partitions whose pass stopped on an error (tried again next pass). */
  readonly failed: number;
}

/** Sentinel: the segment's newest timestamp could not be read (do not delete it by time). */
const UNKNOWN = Number.NaN;

export class Retention {
  readonly #deps: RetentionDeps;
  /** Newest record timestamp per sealed segment (immutable once sealed), by partition. */
  readonly #newest = new WeakMap<Partition, Map<SegmentId, number>>();
  #running: Promise<RetentionPass> | null = null;
  /** A pass was asked for while one ran: run another after it (a seal it may have missed). */
  #again = false;
  readonly #buffer = new Uint8Array(PRODUCER_LIMITS.recoveryReadChunkBytes);

  constructor(deps: RetentionDeps) {
    this.#deps = deps;
  }

  /** Runs one pass over every partition (or joins the one running). */
  enforce(): Promise<RetentionPass> {
    if (this.#running !== null) return this.#running;
    const running = this.#pass().finally(() => { this.#running = null; });
    this.#running = running;
    return running;
  }

  /**
   * A segment sealed: its partition may be over retention.bytes now. A pass runs at once (or
   * right after the one running), so a fast producer does not wait a check interval for room.
   */
  sealed(): void {
    if (this.#running === null) {
      void this.enforce();
      return;
    }
    if (this.#again) return;
    this.#again = true;
    void this.#running.finally(() => {
      this.#again = false;
      void this.enforce();
    });
  }

  async #pass(): Promise<RetentionPass> {
    let freed = 0;
    let failed = 0;
    for (const [topic, list] of [...this.#deps.topics]) {
      const settings = effectiveRetention(this.#deps.metadata.topicConfigs(topic),
        this.#deps.defaults);
      if (settings.retentionMs < 0 && settings.retentionBytes < 0) continue;
      for (const partition of list) {
        try {
          freed += await this.#enforcePartition(partition, settings);
        } catch (error) {
          failed += 1;
          partition.log.warn({ err: String(error) }, 'retention pass failed, trying again later');
        }
      }
    }
    if (freed > 0) this.#deps.log.debug({ freed, failed }, 'retention pass');
    return { freed, failed };
  }

  async #enforcePartition(partition: Partition, settings: RetentionSettings): Promise<number> {
    let freed = 0;
    for (;;) {
      if (partition.broken !== null) return freed;
      let oldest: SegmentView | null;
      try {
        oldest = partition.sequencer.oldestRetirable();
      } catch {
        return freed; // deleted meanwhile
      }
      if (oldest === null || !await this.#due(partition, oldest, settings)) return freed;
      if (!await partition.retireOldest(oldest.segmentId)) return freed;
      this.#newest.get(partition)?.delete(oldest.segmentId);
      freed += 1;
    }
  }

  /** Whether the oldest segment is past the size or the time limit. */
  async #due(partition: Partition, oldest: SegmentView, settings: RetentionSettings):
    Promise<boolean> {
    if (settings.retentionBytes >= 0 &&
        partition.bytes() - oldest.sizeBytes >= settings.retentionBytes) {
      return true;
    }
    if (settings.retentionMs < 0) return false;
    const newest = await this.#newestTimestamp(partition, oldest);
    if (Number.isNaN(newest)) return false;
    // A clock behind the timestamp gives a negative age: kept.
    return this.#deps.clock() - newest > settings.retentionMs;
  }

  async #newestTimestamp(partition: Partition, segment: SegmentView): Promise<number> {
    let known = this.#newest.get(partition);
    if (known === undefined) {
      known = new Map();
      this.#newest.set(partition, known);
    }
    const cached = known.get(segment.segmentId);
    if (cached !== undefined) return cached;
    let newest = -1;
    const { problem } = await walkSegmentHeaders(partition.headerReader, segment, this.#buffer,
      (header) => {
        if (!header.isControl && header.maxTimestamp > newest) newest = header.maxTimestamp;
      });
    if (problem !== null) {
      partition.log.warn({ segmentId: segment.segmentId, problem },
        'retention: segment headers do not parse; kept (not deleted by time)');
      newest = UNKNOWN;
    }
    known.set(segment.segmentId, newest);
    return newest;
  }
}
