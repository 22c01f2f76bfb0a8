/**
 * Segments that no topic of this broker's metadata claims (docs/broker.md, "Quarantine").
 *
 * A broker's metadata can be stale, empty, copied or shared (issue 10): a segment it does not
 * know may hold another broker's acknowledged records. So recovery never frees such a segment:
 * it quarantines it here, logs it, lists it (`quarantineList`, `pmq quarantine list`) and frees
 * it only on an explicit operator command (`quarantineFree`, `pmq quarantine free`). A topic
 * of the same name cannot be created while any of its old segments is quarantined (it would
 * collide with their chain places). The list is rebuilt from the storage nodes' segment tables
 * at every start: it needs no state of its own.
 */
import type { SegmentEntryMessage } from './storage-pool.js';

export interface QuarantinedSegment {
  readonly nodeId: number;
  readonly segmentIndex: number;
  readonly topic: string;
  readonly partition: number;
  readonly chainPosition: number;
  readonly baseOffset: number;
  /** The durable watermark: bytes and last offset the segment holds. */
  readonly position: number;
  readonly offsetLast: number;
  readonly sealed: boolean;
  /** Why no topic claims it. */
  readonly reason: 'unknown topic' | 'partition out of range';
}

export class Quarantine {
  readonly #segments = new Map<string, QuarantinedSegment>();
  /** Each one's size (segments are sized to need), for the pool's count when it is freed. */
  readonly #sizes = new Map<string, number>();

  static keyOf(nodeId: number, segmentIndex: number): string {
    return `${nodeId}/${segmentIndex}`;
  }

  add(nodeId: number, entry: SegmentEntryMessage, reason: QuarantinedSegment['reason']): void {
    this.#segments.set(Quarantine.keyOf(nodeId, entry.segmentIndex), { nodeId,
      segmentIndex: entry.segmentIndex, topic: entry.topic, partition: entry.partition,
      chainPosition: entry.chainPosition, baseOffset: entry.baseOffset,
      position: entry.position, offsetLast: entry.offsetLast, sealed: entry.state === 'sealed',
      reason });
    this.#sizes.set(Quarantine.keyOf(nodeId, entry.segmentIndex), entry.sizeBytes);
  }

  sizeBytesOf(nodeId: number, segmentIndex: number): number {
    return this.#sizes.get(Quarantine.keyOf(nodeId, segmentIndex)) ?? 0;
  }

  get size(): number {
    return this.#segments.size;
  }

  list(): QuarantinedSegment[] {
    return [...this.#segments.values()];
  }

  find(nodeId: number, segmentIndex: number): QuarantinedSegment | undefined {
    return this.#segments.get(Quarantine.keyOf(nodeId, segmentIndex));
  }

  remove(nodeId: number, segmentIndex: number): void {
    this.#segments.delete(Quarantine.keyOf(nodeId, segmentIndex));
    this.#sizes.delete(Quarantine.keyOf(nodeId, segmentIndex));
  }

  /** True while any quarantined segment names this topic. */
  holdsTopic(topic: string): boolean {
    for (const segment of this.#segments.values()) if (segment.topic === topic) return true;
    return false;
  }
}
