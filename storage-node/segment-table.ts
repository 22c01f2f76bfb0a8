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
  dataAreaOf,
  decodeSegmentEntry,
  entryAddress,
  type DataArea,
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
    chainPosition: 0, baseOffset: 0, watermark: { position: 0, offsetLast: 0 }, address: 0,
    sizeBytes: 0 };
  return [{ ...free, generation: 0 }, { ...free, generation: 1 }];
}

function chooseEntry(bytes: Uint8Array, segmentIndex: number, area: DataArea): EntryChoice {
  const problems: SlotProblem[] = [];
  const valid: SegmentEntry[] = [];
  for (let slot = 0; slot < SEGMENT_ENTRY_SLOT_COUNT; slot += 1) {
    const address = entryAddress(segmentIndex, slot);
    const result = decodeSegmentEntry(bytes, address,
      { segmentIndex, slot, area });
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

/** Numbers per segment in the state shared with the native persist path (transport.h). */
export const PERSIST_FIELDS = 10;
const F_OWNER = 0;
const F_GENERATION = 1;
const F_POSITION = 2;
const F_OFFSET_LAST = 3;
const F_EPOCH = 4;
const F_PERSISTED = 6;
const F_DECLINED = 7;
/** The segment's range: native persists inside it (0 while free). */
const F_ADDRESS = 8;
const F_SIZE = 9;

export class SegmentTable {
  readonly #entries: SegmentEntry[];
  /**
   * Shared with the native persist path (native/persist_native.cc) once enabled: per segment
   * whether native may persist it (owner), and the winning entry's generation, watermark and
   * epoch. Native persists move the generation and watermark on; get() takes
   * them over. JS holds a segment (owner 0) while it updates it or queues persists of it.
   */
  readonly persistState: Float64Array;
  readonly #holds: Uint32Array;
  #nativePersist = false;

  private constructor(entries: SegmentEntry[]) {
    this.#entries = entries;
    this.persistState = new Float64Array(entries.length * PERSIST_FIELDS);
    this.#holds = new Uint32Array(entries.length);
    for (const entry of entries) this.#publish(entry);
  }

  /** Decodes every slot of every segment; any segment without a valid slot fails the load. */
  static load(bytes: Uint8Array, sb: Superblock): TableLoad {
    const entries: SegmentEntry[] = [];
    const fallbacks: SlotProblem[] = [];
    const area = dataAreaOf(sb);
    for (let index = 0; index < sb.segmentCount; index += 1) {
      const choice = chooseEntry(bytes, index, area);
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
    const at = index * PERSIST_FIELDS;
    const generation = this.persistState[at + F_GENERATION]!;
    if (generation === entry.generation) return entry;
    // The native path persisted it (only while native owned it, only an active segment's
    // watermark): durable on media, in the slot of that generation.
    if (!(generation > entry.generation && entry.state === 'active')) {
      invariant(false, 'native persists only move an active entry on', { index, generation });
    }
    const synced: SegmentEntry = { ...entry, generation,
      epoch: this.persistState[at + F_EPOCH]!,
      watermark: { position: this.persistState[at + F_POSITION]!,
        offsetLast: this.persistState[at + F_OFFSET_LAST]! } };
    this.#entries[index] = synced;
    return synced;
  }

  /** Lets native persist the active segments JS does not hold (the region is not a file). */
  enableNativePersist(): void {
    this.#nativePersist = true;
    for (let index = 0; index < this.#entries.length; index += 1) this.#setOwner(index);
  }

  /** JS is about to update segment `index`, or queue persists of it: native keeps off. */
  hold(index: number): void {
    this.get(index); // take over what native did before it stops
    this.#holds[index] = this.#holds[index]! + 1;
    this.persistState[index * PERSIST_FIELDS + F_OWNER] = 0;
  }

  release(index: number): void {
    if (!(this.#holds[index]! > 0)) invariant(false, 'a release follows a hold', { index });
    this.#holds[index] = this.#holds[index]! - 1;
    this.#setOwner(index);
  }

  /** Persists served natively and persist frames handed to JS, over all segments. */
  nativePersistStats(): { persisted: number; declined: number } {
    let persisted = 0;
    let declined = 0;
    for (let at = 0; at < this.persistState.length; at += PERSIST_FIELDS) {
      persisted += this.persistState[at + F_PERSISTED]!;
      declined += this.persistState[at + F_DECLINED]!;
    }
    return { persisted, declined };
  }

  #setOwner(index: number): void {
    const native = this.#nativePersist && this.#holds[index] === 0 &&
      this.get(index).state === 'active';
    this.persistState[index * PERSIST_FIELDS + F_OWNER] = native ? 1 : 0;
  }

  #publish(entry: SegmentEntry): void {
    const at = entry.segmentIndex * PERSIST_FIELDS;
    this.persistState[at + F_GENERATION] = entry.generation;
    this.persistState[at + F_POSITION] = entry.watermark.position;
    this.persistState[at + F_OFFSET_LAST] = entry.watermark.offsetLast;
    this.persistState[at + F_EPOCH] = entry.epoch;
    this.persistState[at + F_ADDRESS] = entry.address;
    this.persistState[at + F_SIZE] = entry.sizeBytes;
  }

  all(): readonly SegmentEntry[] {
    for (let index = 0; index < this.#entries.length; index += 1) this.get(index);
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
    this.#publish(entry);
    if (this.#holds[entry.segmentIndex] === 0) this.#setOwner(entry.segmentIndex);
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
