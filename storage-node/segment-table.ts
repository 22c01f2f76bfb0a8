/**
 * The segment table in memory: the winning entry of every segment, and which slot the next
 * update of a segment goes into. No I/O and no persistence ordering: region-store.ts encodes
 * into the mapping, persists, reads back, and only then calls set().
 *
 * Durability: every segment has two slots. An update writes the whole entry with generation + 1
 * into slot (generation + 1) % 2 — never the slot that currently wins — and persists it. A torn
 * update therefore leaves the previous entry (the last durable watermark, the only one anybody
 * was told about) intact, and the next update overwrites the torn slot. Both slots valid means
 * consecutive generations. Single-threaded (the JS thread).
 */
import {
  SEGMENT_ENTRY_SLOT_COUNT,
  decodeSegmentEntry,
  entryAddress,
  type DecodeFailureKind,
  type SegmentEntry,
  type Superblock,
} from '../common/layout.js';
import { invariant } from '../common/invariant.js';

export interface SlotProblem {
  readonly segmentIndex: number;
  readonly slot: number;
  readonly address: number;
  readonly kind: DecodeFailureKind;
  readonly problem: string;
}

export type TableLoad =
  | { readonly ok: true; readonly table: SegmentTable;
      /** Slots that did not decode while the other slot did: torn updates, fallen back. */
      readonly fallbacks: readonly SlotProblem[] }
  | { readonly ok: false; readonly kind: DecodeFailureKind;
      readonly problems: readonly SlotProblem[] };

type EntryChoice = { ok: true; entry: SegmentEntry; fallback: SlotProblem | null } |
  { ok: false; kind: DecodeFailureKind; problems: SlotProblem[] };

/** The free entries format writes for a segment: generation 0 in slot 0, 1 in slot 1. */
export function formatEntries(segmentIndex: number, epoch: number): readonly SegmentEntry[] {
  const free = { segmentIndex, epoch, state: 'free' as const, topic: '', partition: 0,
    chainPosition: 0, baseOffset: 0, watermark: { position: 0, offsetLast: 0 } };
  return [{ ...free, generation: 0 }, { ...free, generation: 1 }];
}

function chooseEntry(bytes: Uint8Array, segmentIndex: number, sb: Superblock): EntryChoice {
  const problems: SlotProblem[] = [];
  const valid: SegmentEntry[] = [];
  for (let slot = 0; slot < SEGMENT_ENTRY_SLOT_COUNT; slot += 1) {
    const address = entryAddress(segmentIndex, slot);
    const result = decodeSegmentEntry(bytes, address,
      { segmentIndex, slot, segmentSizeBytes: sb.segmentSizeBytes });
    if (result.ok) valid.push(result.value);
    else problems.push({ segmentIndex, slot, address, kind: result.kind, problem: result.problem });
  }
  if (problems.some((p) => p.kind === 'version')) return { ok: false, kind: 'version', problems };
  const [a, b] = valid;
  if (a === undefined) return { ok: false, kind: 'corrupt', problems };
  if (b === undefined) return { ok: true, entry: a, fallback: problems[0] ?? null };
  const [older, newer] = a.generation < b.generation ? [a, b] : [b, a];
  if (newer.generation !== older.generation + 1) {
    const slot = newer.generation % SEGMENT_ENTRY_SLOT_COUNT;
    return { ok: false, kind: 'corrupt', problems: [{ segmentIndex, slot,
      address: entryAddress(segmentIndex, slot), kind: 'corrupt',
      problem: `slots hold generations ${older.generation} and ${newer.generation}` }] };
  }
  return { ok: true, entry: newer, fallback: null };
}

export class SegmentTable {
  readonly #entries: SegmentEntry[];

  private constructor(entries: SegmentEntry[]) {
    this.#entries = entries;
  }

  /** Decodes every slot of every segment; any segment without a valid slot fails the load. */
  static load(bytes: Uint8Array, sb: Superblock): TableLoad {
    const entries: SegmentEntry[] = [];
    const fallbacks: SlotProblem[] = [];
    for (let index = 0; index < sb.segmentCount; index += 1) {
      const choice = chooseEntry(bytes, index, sb);
      if (!choice.ok) return { ok: false, kind: choice.kind, problems: choice.problems };
      entries.push(choice.entry);
      if (choice.fallback !== null) fallbacks.push(choice.fallback);
    }
    return { ok: true, table: new SegmentTable(entries), fallbacks };
  }

  get count(): number {
    return this.#entries.length;
  }

  get(index: number): SegmentEntry {
    const entry = this.#entries[index];
    if (entry === undefined) {
      invariant(false, 'segment index inside the table', { index });
    }
    return entry;
  }

  all(): readonly SegmentEntry[] {
    return this.#entries;
  }

  /** The slot the next update of segment `index` must go into. */
  nextSlot(index: number): number {
    return (this.get(index).generation + 1) % SEGMENT_ENTRY_SLOT_COUNT;
  }

  /** Records an entry that is durable in nextSlot(index). */
  set(entry: SegmentEntry): void {
    const current = this.get(entry.segmentIndex);
    if (entry.generation !== current.generation + 1) {
      invariant(false, 'generations rise by one',
        { index: entry.segmentIndex, current: current.generation, next: entry.generation });
    }
    this.#entries[entry.segmentIndex] = entry;
  }

  /** The lowest-indexed free segment not in `busy`, or -1. */
  findFree(busy: ReadonlySet<number>): number {
    return this.#entries.findIndex((e) => e.state === 'free' && !busy.has(e.segmentIndex));
  }

  /** The live (active or sealed) segment at this place of this partition's chain, if any. */
  findLive(topic: string, partition: number, chainPosition: number): SegmentEntry | undefined {
    return this.#entries.find((e) => e.state !== 'free' && e.topic === topic &&
      e.partition === partition && e.chainPosition === chainPosition);
  }
}
