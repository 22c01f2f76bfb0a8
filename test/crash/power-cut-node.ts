/**
 * Power cuts of a real storage node (docs/crash-testing.md, "Power cut of a real node"): one
 * `pmq storage` and one `pmq broker` process (test/helpers/e2e-cluster.ts) whose region runs in
 * the durable shadow test mode (PMQ_REGION_DURABLE_SHADOW, native/region_shadow.h), under load
 * from nemesis producer processes (acks 'all', histories in files). At a random moment under
 * load the storage node is stopped (the cut; replies already sent still land), then it, the
 * broker and the producers are SIGKILLed. The image a
 * power cut would leave is built from the two files: the shadow's bytes (persisted for sure)
 * and, for every 8-byte word where the region differs, the old or the new word by the cut's
 * tear mode (power-cut-image.ts). Three images are checked in this process (RegionStore.open
 * and verifySegmentData of every live segment: nothing a watermark covers is torn), then the
 * storage node and the broker restart on the last one, every partition is read back from
 * offset 0, and history-checker.ts judges the producers' histories against that read: every
 * acknowledged record at its acknowledged offset, nothing unknown served, no duplicate;
 * offsets dense.
 *
 * One cut per call, all choices from `seed` (backing, moment, tear mode, words); the timing of
 * the processes is not replayable to the instruction, so a replay repeats the plan, not the
 * exact image.
 */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync }
  from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { Region } from '../../native/region.js';
import { RegionStore } from '../../storage-node/region-store.js';
import { exitOf } from '../helpers/broker-cluster.js';
import { E2eCluster, type FixtureRun, type Running } from '../helpers/e2e-cluster.js';
import { prngFrom, type Prng } from '../fixtures/record-batch-random.js';
import { checkHistory, formatReport, type CheckResult } from './history-checker.js';
import { connectRetrying, sleep } from './nemesis-common.js';
import { finalRead, readHistory, spawnProducer } from './nemesis.js';
import { metadataProblems, startMetadataLoad, type MetadataLoad } from './power-cut-metadata.js';
import { buildImage, pendingWords, planImage, type ImagePlan } from './power-cut-image.js';
import type { CutSnapshot } from './power-cut-region.js';

const TOPIC = 'powercut';
const SHADOW_ENV = 'PMQ_REGION_DURABLE_SHADOW';
const REQUEST_TIMEOUT_MS = 2500;
/** Images built and verified per cut; the storage node restarts on the last one. */
const IMAGES_PER_CUT = 3;
/** Large enough that 64 KiB segments roll within a cut (seal and allocate run too). */
const VALUE_BYTES = 400;
/** Short pauses between sends: persists are in flight most of the time, so most cuts hit one. */
const PAUSE_MS_MAX = 4;
/** Time for replies sent before the cut to reach the producers (loopback: well under 1 ms). */
const REPLIES_LAND_MS = 100;
/** Retriable failures of the final read are retried this long per step (nodes are up). */
const FINAL_READ_WITHIN_MS = 15_000;

export interface NodeCutOptions {
  seed: number;
  producers?: number;
  partitions?: number;
  /** Longest pause between the first acknowledgement and the cut. */
  cutAfterMsMax?: number;
  log?: (line: string) => void;
}

export interface ImageFacts {
  readonly plan: ImagePlan;
  /** 8-byte words stored and not persisted at the cut, and how many the image took new. */
  readonly wordsPending: number;
  readonly wordsNew: number;
}

export interface NodeCutResult {
  readonly seed: number;
  readonly backing: 'file' | 'shm';
  readonly cutAfterMs: number;
  readonly image: ImageFacts;
  /** Live segments whose data verified under their watermark, summed over the images. */
  readonly segmentsVerified: number;
  readonly check: CheckResult;
  /** Records in the final read. */
  readonly recordsRead: number;
  /** Problems outside the history: image checks, restart, offsets not dense, metadata. */
  readonly problems: string[];
  /** Metadata acknowledged before the cut: the group's last offset, topics created. */
  readonly metadataAcked: { offset: number; topics: number };
  readonly timeMs: number;
}

/** What the cut left: every store (the region file) and what was persisted (the shadow). */
export function readCut(regionPath: string, shadowPath: string): CutSnapshot {
  // Copies: Int32Array views need an aligned, unshared buffer.
  const volatile = new Uint8Array(readFileSync(regionPath));
  const durable = new Uint8Array(readFileSync(shadowPath));
  if (durable.byteLength !== volatile.byteLength) {
    throw new Error(`shadow ${shadowPath} has ${durable.byteLength} bytes, region ` +
      `${volatile.byteLength}`);
  }
  return { cut: 0, next: null, durable, volatile };
}

/** Writes one power-cut image of `snapshot` over the region file. */
export function writeCutImage(regionPath: string, snapshot: CutSnapshot, pending: Uint32Array,
  prng: Prng): ImageFacts {
  const plan = planImage(prng);
  const { image, wordsNew } = buildImage(snapshot, pending, plan, prng);
  writeFileSync(regionPath, image);
  return { plan, wordsPending: pending.length, wordsNew };
}

/**
 * Opens the image as the storage node would and verifies every live segment's data up to its
 * watermark. A blank image (cut before format was persisted) is fine; it returns -1.
 */
export function verifyImage(regionPath: string, problems: string[]): number {
  const region = Region.open({ path: regionPath, mode: 'open' });
  try {
    let store: RegionStore;
    try {
      store = RegionStore.open(region);
    } catch (error) {
      const code = (error as { code?: string }).code;
      if (code !== 'PMQ_ERR_REGION_NOT_FORMATTED') problems.push(String(error));
      return -1;
    }
    let verified = 0;
    for (const segment of store.segments()) {
      if (segment.state === 'free') continue;
      try {
        store.verifySegmentData(segment.segmentIndex);
        verified += 1;
      } catch (error) {
        problems.push(String(error));
      }
    }
    return verified;
  } finally {
    region.close();
  }
}

/**
 * Problems where a partition's final read is not offsets 0, 1, 2, … in order, or does not reach
 * the high watermark the restarted broker reports (`ends`: the next offset per partition).
 */
export function denseProblems(stored: readonly { offset: number }[][],
  ends: readonly number[]): string[] {
  const problems: string[] = [];
  stored.forEach((records, partition) => {
    // Offsets only rise; gaps are the control batches that filled a closed lease's unwritten
    // rest (docs/broker.md, "Leases"), which readers skip. Lost acknowledged records are the
    // history checker's to find.
    const at = records.findIndex((record, index) => index > 0 &&
      record.offset <= records[index - 1]!.offset);
    if (at >= 0) {
      problems.push(`partition ${partition}: offset ${records[at]!.offset} read at position ` +
        `${at} of the final read after offset ${records[at - 1]!.offset} (offsets not rising)`);
    }
    const end = ends[partition] ?? 0;
    const last = records.at(-1)?.offset ?? -1;
    if (last >= end || end - records.length < 0) {
      problems.push(`partition ${partition}: high watermark ${end} after the restart, ` +
        `${records.length} records readable up to offset ${last}`);
    }
  });
  return problems;
}

/** Resolves once any history file in `dir` holds a send-ok (the load is running). */
async function firstAck(dir: string, withinMs: number): Promise<void> {
  const deadline = Date.now() + withinMs;
  while (Date.now() < deadline) {
    const acked = readdirSync(dir).some((name) =>
      readFileSync(join(dir, name), 'utf8').includes('"send-ok"'));
    if (acked) return;
    await sleep(25);
  }
  throw new Error(`no producer was acknowledged within ${withinMs} ms`);
}

interface Cut {
  readonly prng: Prng;
  readonly dir: string;
  readonly historyDir: string;
  readonly regionPath: string;
  readonly shadowPath: string;
  readonly cluster: E2eCluster;
  readonly producers: FixtureRun<{ event: string }>[];
  readonly problems: string[];
  /** Group commits and topic creates alongside the producers (power-cut-metadata.ts). */
  metadata: MetadataLoad | null;
}

async function load(cut: Cut, opts: NodeCutOptions): Promise<number> {
  const partitions = opts.partitions ?? 3;
  const admin = await connectRetrying(cut.cluster.brokerAddress, 'powercut-admin',
    REQUEST_TIMEOUT_MS);
  await admin.admin().createTopic(TOPIC, { partitions });
  await admin.close();
  for (let i = 1; i <= (opts.producers ?? 3); i += 1) {
    const process = `producer-${i}`;
    cut.producers.push(spawnProducer({ broker: cut.cluster.brokerAddress, topic: TOPIC,
      partitions, process, historyPath: join(cut.historyDir, `${process}.jsonl`),
      seed: cut.prng.int(0x1_0000_0000), requestTimeoutMs: REQUEST_TIMEOUT_MS,
      valueBytes: VALUE_BYTES, pauseMsMax: PAUSE_MS_MAX }));
  }
  cut.metadata = startMetadataLoad(cut.cluster.brokerAddress, TOPIC, REQUEST_TIMEOUT_MS);
  await firstAck(cut.historyDir, 30_000);
  const cutAfterMs = cut.prng.int((opts.cutAfterMsMax ?? 1500) + 1);
  await sleep(cutAfterMs);
  return cutAfterMs;
}

/**
 * The cut: the storage node stops at once (SIGSTOP: that instant decides the image, as a power
 * failure would), replies it sent before reach broker and producers for REPLIES_LAND_MS (they
 * count as acknowledged before the cut, as on a real network), then everything is SIGKILLed.
 * IMAGES_PER_CUT images are verified in this process; the last stays for the restart.
 */
async function powerCut(cut: Cut): Promise<{ image: ImageFacts; segmentsVerified: number }> {
  const storage = cut.cluster.storage!.child;
  storage.kill('SIGSTOP');
  await sleep(REPLIES_LAND_MS);
  cut.metadata?.freeze();
  await cut.cluster.killStorage();
  await cut.cluster.killBroker();
  await Promise.all(cut.producers.map((producer) => producer.kill()));
  await cut.metadata?.done;
  const snapshot = readCut(cut.regionPath, cut.shadowPath);
  const pending = pendingWords(snapshot);
  let image: ImageFacts | null = null;
  let segmentsVerified = 0;
  for (let k = 0; k < IMAGES_PER_CUT; k += 1) {
    image = writeCutImage(cut.regionPath, snapshot, pending, cut.prng);
    const problems: string[] = [];
    segmentsVerified += Math.max(0, verifyImage(cut.regionPath, problems));
    cut.problems.push(...problems.map((problem) =>
      `image ${k} (${image!.plan.mode}/${image!.plan.newShare}): ${problem}`));
  }
  return { image: image!, segmentsVerified };
}

/** Resolves with a description once the storage node or the broker exits. */
function deathOf(cluster: E2eCluster): Promise<string> {
  const watch = (name: string, running: Running): Promise<string> => exitOf(running.child)
    .then((code) => `${name} exited (${code ?? running.child.signalCode}) after the restart ` +
      `on the image: ${running.stderr().slice(-1500)}`);
  return Promise.race([watch('storage node', cluster.storage!), watch('broker',
    cluster.broker!)]);
}

async function restartAndRead(cut: Cut, opts: NodeCutOptions):
  Promise<{ check: CheckResult; recordsRead: number }> {
  try {
    await cut.cluster.startStorage();
    await cut.cluster.startBroker();
  } catch (error) {
    cut.problems.push(`restart on the image: ${String(error).slice(0, 2000)} ` +
      `${cut.cluster.storage?.stderr().slice(-2000) ?? ''}`);
    return { check: checkHistory(readHistory(cut.historyDir)), recordsRead: 0 };
  }
  const reading = finalRead({ broker: cut.cluster.brokerAddress, topic: TOPIC,
    partitions: opts.partitions ?? 3, historyDir: cut.historyDir,
    requestTimeoutMs: REQUEST_TIMEOUT_MS, log: opts.log ?? (() => undefined),
    withinMs: FINAL_READ_WITHIN_MS });
  const outcome = await Promise.race([reading.then((read) => ({ read }),
    (error: unknown) => ({ failed: `final read: ${String(error).slice(0, 2000)}` })),
  deathOf(cut.cluster).then((died) => ({ failed: died }))]);
  if ('failed' in outcome) {
    cut.problems.push(outcome.failed);
    await reading.catch(() => undefined); // it gives up within FINAL_READ_WITHIN_MS per step
    return { check: checkHistory(readHistory(cut.historyDir)), recordsRead: 0 };
  }
  const { read } = outcome;
  cut.problems.push(...read.problems, ...denseProblems(read.stored, read.ends));
  if (cut.metadata !== null) {
    const client = await connectRetrying(cut.cluster.brokerAddress, 'powercut-check',
      REQUEST_TIMEOUT_MS);
    try {
      cut.problems.push(...await metadataProblems(client, TOPIC, cut.metadata.acked));
    } finally {
      await client.close();
    }
  }
  const check = checkHistory(readHistory(cut.historyDir));
  return { check, recordsRead: read.stored.reduce((sum, records) => sum + records.length, 0) };
}

/** Runs one cut; never throws for a finding (the caller asserts on the result). */
export async function runNodeCut(opts: NodeCutOptions): Promise<NodeCutResult> {
  const started = Date.now();
  const prng = prngFrom(opts.seed);
  // Mostly an ordinary file: persists there take a real msync (about 1 ms here), as long as
  // on slow media; /dev/shm persists are sync and short.
  const backing = prng.chance(2 / 3) ? 'file' : 'shm';
  const dir = mkdtempSync(join(backing === 'file' ? tmpdir() : '/dev/shm', 'pmq-powercut-'));
  const historyDir = join(dir, 'history');
  mkdirSync(historyDir);
  const regionPath = join(dir, 'region');
  const shadowPath = join(dir, 'region.shadow');
  const cluster = new E2eCluster({ regionSize: '16MiB', segmentSize: '64KiB',
    reservationTimeoutMs: 1000, regionPath, storageEnv: { [SHADOW_ENV]: shadowPath } });
  const cut: Cut = { prng, dir, historyDir, regionPath, shadowPath, cluster, producers: [],
    problems: [], metadata: null };
  try {
    await cluster.startStorage();
    await cluster.startBroker();
    const cutAfterMs = await load(cut, opts);
    const { image, segmentsVerified } = await powerCut(cut);
    opts.log?.(`cut seed ${opts.seed}: ${backing}, ${cutAfterMs} ms after the first ack, ` +
      `tear ${image.plan.mode}/${image.plan.newShare}, ${image.wordsPending} words pending, ` +
      `${image.wordsNew} taken new`);
    const { check, recordsRead } = await restartAndRead(cut, opts);
    const acked = cut.metadata?.acked;
    return { seed: opts.seed, backing, cutAfterMs, image, segmentsVerified, check, recordsRead,
      problems: cut.problems, metadataAcked: { offset: acked?.offset ?? -1,
        topics: acked?.topics.length ?? 0 }, timeMs: Date.now() - started };
  } finally {
    await Promise.all(cut.producers.map((producer) => producer.kill()));
    await cluster.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** One line per cut, and the checker's report when it found something. */
export function describeCut(result: NodeCutResult): string {
  const { stats } = result.check;
  const lines = [`cut PMQ_POWERCUT_NODE_SEED=${result.seed}: ${result.backing} backing, cut ` +
    `${result.cutAfterMs} ms after the first ack; image ${result.image.plan.mode} ` +
    `(${result.image.plan.newShare}), ${result.image.wordsPending} words pending, ` +
    `${result.image.wordsNew} new; ${result.segmentsVerified} live segments verified; sends ` +
    `${stats.sends}: acked ${stats.acked}, indeterminate ${stats.indeterminate} ` +
    `(${stats.indeterminateRead} read); final read ${result.recordsRead}; ` +
    `metadata acked: group offset ${result.metadataAcked.offset}, ` +
    `${result.metadataAcked.topics} topic creates; ` +
    `${result.problems.length} problems; ${result.timeMs} ms`];
  if (!result.check.valid) lines.push(formatReport(result.check));
  lines.push(...result.problems);
  return lines.join('\n');
}
