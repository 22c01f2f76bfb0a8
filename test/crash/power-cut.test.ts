// Simulated power cuts under RegionStore (docs/crash-testing.md, "Power cut"): a seeded workload
// runs on a PowerCutRegion; at cut points chosen from the seed, images a power failure could
// leave are built (durable bytes kept, pending 8-byte words old, new or torn per line) and
// recovered with RegionStore.open, then checked against what was acknowledged.
//
// PMQ_POWERCUT_IMAGES (default 300) sets how many images; PMQ_POWERCUT_SEED the first round's
// seed. A failure prints PMQ_POWERCUT_SEED, _CUT and _IMAGE: set all three to replay that
// one image.
import t from 'tap';

import { TABLE_ADDRESS } from '../../common/layout.js';
import { prngFrom } from '../fixtures/record-batch-random.js';
import { checkImage, type ImageVerdict } from './power-cut-check.js';
import { buildImage, pendingWords, planImage } from './power-cut-image.js';
import { PowerCutRegion, type CutSnapshot } from './power-cut-region.js';
import { REGION_BYTES, runWorkload, type WorkloadRun } from './power-cut-workload.js';

const IMAGES = Number(process.env.PMQ_POWERCUT_IMAGES ?? 300);
const SEED = Number(process.env.PMQ_POWERCUT_SEED ?? Math.floor(Math.random() * 2 ** 31));
const REPLAY_CUT = process.env.PMQ_POWERCUT_CUT;
const REPLAY_IMAGE = process.env.PMQ_POWERCUT_IMAGE;
const CUTS_PER_ROUND = 10;
const IMAGES_PER_CUT = 3;
const FAILURES_SHOWN = 5;

const mix = (...values: number[]): number => values.reduce((h, v) =>
  Math.imul(h ^ (v >>> 0), 0x9e3779b1) ^ (h >>> 15), 0x2545f491) >>> 0;

interface Totals {
  images: number; cuts: number; problems: number; fallbacks: number; inFlightRecovered: number;
  recordsAcknowledged: number; outcomes: Record<string, number>; before: Record<string, number>;
}

const totals: Totals = { images: 0, cuts: 0, problems: 0, fallbacks: 0, inFlightRecovered: 0,
  recordsAcknowledged: 0, outcomes: {}, before: {} };

const backingOf = (seed: number): 'dax' | 'file' => (mix(seed, 1) % 4 === 0 ? 'file' : 'dax');

/** Runs the workload of `seed`, keeping snapshots at the chosen cut points (and the end). */
async function runRound(seed: number, cuts: (count: number) => Set<number>):
  Promise<{ run: WorkloadRun; snapshots: CutSnapshot[] }> {
  const counting = new PowerCutRegion({ sizeBytes: REGION_BYTES, backing: backingOf(seed) });
  const count = (await runWorkload(seed, counting)).persistCount;
  const chosen = cuts(count);
  const region = new PowerCutRegion({ sizeBytes: REGION_BYTES, backing: backingOf(seed),
    capture: (cut) => chosen.has(cut) });
  const run = await runWorkload(seed, region);
  if (run.persistCount !== count) throw new Error(`seed ${seed}: workload not deterministic`);
  const snapshots = [...region.snapshots];
  if (chosen.has(count)) snapshots.push(region.snapshotNow());
  return { run, snapshots };
}

function chooseCuts(seed: number, count: number): Set<number> {
  if (REPLAY_CUT !== undefined) return new Set([Number(REPLAY_CUT)]);
  const prng = prngFrom(mix(seed, 2));
  // The end (nothing in flight) and one cut in format or the first epoch raise.
  const chosen = new Set<number>([count, prng.int(Math.min(count, 6))]);
  while (chosen.size < Math.min(CUTS_PER_ROUND, count + 1)) chosen.add(prng.int(count));
  return chosen;
}

function tally(verdict: ImageVerdict, snapshot: CutSnapshot, run: WorkloadRun): void {
  totals.images += 1;
  totals.fallbacks += verdict.fallbacks;
  totals.inFlightRecovered += verdict.inFlightRecovered;
  totals.recordsAcknowledged += verdict.recordsAcknowledged;
  totals.outcomes[verdict.outcome] = (totals.outcomes[verdict.outcome] ?? 0) + 1;
  const next = snapshot.next;
  const before = next === null ? 'end of workload' :
    next.address < TABLE_ADDRESS ? 'superblock persist' :
    next.address < run.dataAddress ? 'table persist' : 'data persist';
  totals.before[before] = (totals.before[before] ?? 0) + 1;
}

async function checkRound(seed: number, imagesWanted: number): Promise<string[]> {
  const { run, snapshots } = await runRound(seed, (count) => chooseCuts(seed, count));
  const failures: string[] = [];
  let images = 0;
  for (const snapshot of snapshots) {
    totals.cuts += 1;
    const pending = pendingWords(snapshot);
    const perCut = Math.ceil(imagesWanted / snapshots.length);
    for (let i = 0; i < perCut && images < imagesWanted; i += 1) {
      const image = REPLAY_IMAGE === undefined ? i : Number(REPLAY_IMAGE);
      const prng = prngFrom(mix(seed, snapshot.cut, image));
      const plan = planImage(prng);
      const built = buildImage(snapshot, pending, plan, prng);
      const verdict = await checkImage(built.image, snapshot.cut, run);
      images += 1;
      tally(verdict, snapshot, run);
      if (verdict.problems.length === 0) continue;
      totals.problems += 1;
      failures.push(`PMQ_POWERCUT_SEED=${seed} PMQ_POWERCUT_CUT=${snapshot.cut} ` +
        `PMQ_POWERCUT_IMAGE=${image} (${plan.mode}, new ${plan.newShare}, ` +
        `${built.wordsNew}/${pending.length} pending words new, before ` +
        `${JSON.stringify(snapshot.next)}): ${verdict.problems.join('; ')}`);
      if (REPLAY_IMAGE !== undefined) break;
    }
  }
  return failures;
}

const started = performance.now();
const perRound = CUTS_PER_ROUND * IMAGES_PER_CUT;
const rounds = REPLAY_CUT === undefined ? Math.ceil(IMAGES / perRound) : 1;
for (let round = 0; round < rounds; round += 1) {
  const seed = (SEED + round) >>> 0;
  const wanted = REPLAY_CUT === undefined ? Math.min(perRound, IMAGES - round * perRound) : 1;
  t.test(`power cuts in workload seed ${seed}`, async (t) => {
    const failures = await checkRound(seed, wanted);
    for (const failure of failures.slice(0, FAILURES_SHOWN)) t.fail(failure);
    t.equal(failures.length, 0, `${wanted} images recover as acknowledged`);
  });
}

t.teardown(() => {
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  t.comment(`power cut: ${totals.images} images from ${totals.cuts} cuts in ${seconds} s, ` +
    `${totals.problems} with problems; outcomes ${JSON.stringify(totals.outcomes)}; cut before ` +
    `${JSON.stringify(totals.before)}; fallbacks ${totals.fallbacks}, in-flight updates ` +
    `recovered ${totals.inFlightRecovered}, acknowledged records checked ` +
    `${totals.recordsAcknowledged}`);
});
