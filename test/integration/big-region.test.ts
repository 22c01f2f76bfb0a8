// Regions above V8's 4 GiB ArrayBuffer cap (issue 12), as a user runs them: `pmq storage --size
// 16GiB --sparse` and a 64 GiB sparse region on an ordinary file in a temp dir, a real broker,
// `pmq topic create/produce/consume` of a few thousand records, then the storage node killed
// (SIGKILL) and restarted over the same file: it recovers by reading superblocks and table
// only (no page of the segments), so its resident memory stays far below the region's size,
// and the records read back. Also the refusals: a sparse region larger than its file system,
// and a size above the largest region. Sparse files, removed in teardown.
import { existsSync, mkdtempSync, readFileSync, rmSync, statfsSync, statSync, truncateSync,
  writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import t from 'tap';

import { type Proc, runPmq, startBroker, stopProc } from '../helpers/broker-cluster.js';
import { testKeyFile } from '../helpers/cluster-key.js';
import { exitOf, spawnPmq, startStorage, type StorageProcess } from
  '../helpers/storage-process.js';

const GIB = 1024 ** 3;
const RECORDS = 3000;
/** Far below any region here: a node that touched every page would hold gigabytes. */
const RSS_BYTES_MAX = 512 * 1024 ** 2;

function residentBytes(pid: number): number {
  const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (match === null) throw new Error(`no VmRSS for ${pid}`);
  return Number(match[1]) * 1024;
}

const asProc = (storage: StorageProcess): Proc =>
  ({ child: storage.child, host: storage.host, port: storage.port, match: [] as never });

/** The first log line `msg` of the node (its log may reach stderr after the stdout banner). */
async function logLine(storage: StorageProcess, msg: string): Promise<Record<string, unknown>> {
  for (let waited = 0; waited < 10_000; waited += 50) {
    const [line] = storage.logLines(msg);
    if (line !== undefined) return line;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`no '${msg}' log line; stderr: ${storage.stderr()}`);
}

const lines = (text: string): string[] => text.split('\n').filter((line) => line.length > 0);

for (const [label, size] of [['16GiB', 16 * GIB], ['64GiB', 64 * GIB]] as const) {
  t.test(`a ${label} sparse region serves, restarts and recovers in little memory`,
    async (t) => {
      const dir = mkdtempSync(join(tmpdir(), 'pmq-big-region-'));
      const keyFile = testKeyFile(dir);
      const path = join(dir, 'storage.region');
      const running: Proc[] = [];
      t.teardown(async () => {
        for (const proc of running) await stopProc(proc);
        rmSync(dir, { recursive: true, force: true });
      });
      let storage = await startStorage(keyFile, ['--path', path, '--size', label, '--sparse']);
      running.push(asProc(storage));
      t.equal(statSync(path).size, size, `the file is ${label}`);
      t.ok(statSync(path).blocks * 512 < GIB, 'and sparse: under 1 GiB of it allocated');
      t.match(await logLine(storage, 'region formatted'), { segmentSizeBytes: 64 * 1024 ** 2 });

      let broker = await startBroker(join(dir, 'broker'), [asProc(storage)]);
      running.push(broker);
      const client = ['--broker', `${broker.host}:${broker.port}`, '--transports', 'tcp'];
      const created = await runPmq(['topic', 'create', 'w1', '--partitions', '2', ...client]);
      t.equal(created.code, 0, created.stderr);
      const input = Array.from({ length: RECORDS }, (_, i) => `w1-${i}-${'x'.repeat(i % 97)}`);
      const produced = await runPmq(['produce', 'w1', '--batch-bytes', '16KiB', ...client],
        `${input.join('\n')}\n`);
      t.equal(produced.code, 0, produced.stderr);
      const consumed = await runPmq(['consume', 'w1', '--max', String(RECORDS), '--from',
        'earliest', ...client]);
      t.equal(consumed.code, 0, consumed.stderr);
      t.same(lines(consumed.stdout).sort(), [...input].sort(), 'every record read back');

      await stopProc(broker);
      await storage.kill('SIGKILL');
      storage = await startStorage(keyFile, ['--path', path]);
      running.push(asProc(storage));
      const recovered = await logLine(storage, 'region recovered');
      t.ok(Number(recovered.active) >= 2, 'recovered with both partitions\' segments active');
      t.ok(Number(recovered.timeMs) < 5000, `recovery took ${String(recovered.timeMs)} ms`);
      const rss = residentBytes(storage.child.pid!);
      t.ok(rss < RSS_BYTES_MAX, `storage node resident ${Math.round(rss / 1024 ** 2)} MiB ` +
        `after recovering ${label}`);

      broker = await startBroker(join(dir, 'broker'), [asProc(storage)]);
      running.push(broker);
      const restarted = ['--broker', `${broker.host}:${broker.port}`, '--transports', 'tcp'];
      const again = await runPmq(['consume', 'w1', '--max', String(RECORDS), '--from',
        'earliest', ...restarted]);
      t.equal(again.code, 0, again.stderr);
      t.same(lines(again.stdout).sort(), [...input].sort(), 'every record after the restart');
      t.ok(residentBytes(storage.child.pid!) < RSS_BYTES_MAX, 'and still small after reads');
    });
}

t.test('a region its file system cannot hold, or above the largest, is a clear refusal',
  async (t) => {
    // On the ordinary file system, never /dev/shm: should a check below regress, the node
    // would start over the sparse file, and on a tmpfs its prefault would fill the tmpfs.
    const dir = mkdtempSync(join(tmpdir(), 'pmq-big-region-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    const keyFile = testKeyFile(dir);
    const refused = async (args: string[]): Promise<string> => {
      const { child, stderr } = spawnPmq(['storage', '--listen', '127.0.0.1:0',
        '--transports', 'tcp', '--cluster-key-file', keyFile, ...args]);
      const timer = setTimeout(() => child.kill('SIGKILL'), 30_000); // started: stop it
      t.equal(await exitOf(child), 1, `pmq storage ${args.join(' ')} fails`);
      clearTimeout(timer);
      return stderr();
    };
    const fs = statfsSync(dir);
    // Twice the whole file system, in GiB: larger than it, sparse or not.
    const tooBig = Math.ceil((2 * fs.blocks * fs.bsize) / GIB);
    const path = join(dir, 'r.region');
    t.match(await refused(['--path', path, '--size', `${tooBig}GiB`, '--sparse']),
      /file system holding region .* less than .*\[PMQ_ERR_REGION_NO_SPACE\]/s);
    t.notOk(existsSync(path), 'nothing left behind');
    // An existing file with more holes than free space: a store into one would be SIGBUS.
    writeFileSync(path, '');
    truncateSync(path, tooBig * GIB);
    t.match(await refused(['--path', path]), /is sparse: .*\[PMQ_ERR_REGION_NO_SPACE\]/s);
    t.match(await refused(['--path', join(dir, 'big.region'), '--size', '65TiB', '--sparse']),
      /PMQ_ERR_REGION_TOO_LARGE/);
  });
