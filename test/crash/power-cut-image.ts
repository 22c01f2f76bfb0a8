/**
 * Images a power cut could leave, from a PowerCutRegion snapshot (power-cut-region.ts): the
 * durable bytes exactly, and every pending 8-byte word (stored, not persisted) old or new.
 *
 * Tear modes, one per image:
 * - 'old': no pending word reached the media (the cut came before any write-back);
 * - 'new': every one did (the caches were written back just before the cut);
 * - 'words': each pending word independently new with probability `newShare`;
 * - 'lines': each cache line with pending words is wholly old, wholly new, or torn (its words
 *   independently new with probability `newShare`), a third each: the coarser picture of lines
 *   written back or not as units, with some torn in the middle of their write-back.
 * Deterministic in the PRNG: a (seed, cut, image) triple replays one image.
 */
import type { Prng } from '../fixtures/record-batch-random.js';
import { CACHE_LINE_BYTES, WORD_BYTES, type CutSnapshot } from './power-cut-region.js';

export const TEAR_MODES = ['old', 'new', 'words', 'lines'] as const;
export type TearMode = (typeof TEAR_MODES)[number];

const WORDS_PER_LINE = CACHE_LINE_BYTES / WORD_BYTES;

/** Indexes of the 8-byte words where the stored bytes differ from the durable ones. */
export function pendingWords(snapshot: CutSnapshot): Uint32Array {
  const a = new Int32Array(snapshot.durable.buffer, snapshot.durable.byteOffset,
    snapshot.durable.byteLength / 4);
  const b = new Int32Array(snapshot.volatile.buffer, snapshot.volatile.byteOffset,
    snapshot.volatile.byteLength / 4);
  const words: number[] = [];
  for (let i = 0; i < a.length; i += 2) {
    if (a[i] !== b[i] || a[i + 1] !== b[i + 1]) words.push(i / 2);
  }
  return Uint32Array.from(words);
}

export interface ImagePlan {
  readonly mode: TearMode;
  readonly newShare: number;
}

export function planImage(prng: Prng): ImagePlan {
  const mode = TEAR_MODES[prng.int(TEAR_MODES.length)] ?? 'words';
  const newShare = [0.1, 0.5, 0.9][prng.int(3)] ?? 0.5;
  return { mode, newShare };
}

function takeWord(image: Uint8Array, snapshot: CutSnapshot, word: number): void {
  const at = word * WORD_BYTES;
  image.set(snapshot.volatile.subarray(at, at + WORD_BYTES), at);
}

/** Builds one image; returns it and how many pending words it took new. */
export function buildImage(snapshot: CutSnapshot, pending: Uint32Array, plan: ImagePlan,
  prng: Prng): { image: Uint8Array; wordsNew: number } {
  const image = snapshot.durable.slice();
  let wordsNew = 0;
  let line = -1;
  let lineChoice = 0; // 0 old, 1 new, 2 torn
  for (const word of pending) {
    let take: boolean;
    if (plan.mode === 'old') take = false;
    else if (plan.mode === 'new') take = true;
    else if (plan.mode === 'words') take = prng.next() < plan.newShare;
    else {
      const wordLine = Math.floor(word / WORDS_PER_LINE);
      if (wordLine !== line) {
        line = wordLine;
        lineChoice = prng.int(3);
      }
      take = lineChoice === 1 || (lineChoice === 2 && prng.next() < plan.newShare);
    }
    if (take) {
      takeWord(image, snapshot, word);
      wordsNew += 1;
    }
  }
  return { image, wordsNew };
}
