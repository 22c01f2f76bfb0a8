/**
 * Allocation sampling for `pmq storage` and `pmq broker` under a benchmark (issue 11): loaded
 * into every process of a run with `--import`, it starts V8's sampling heap profiler in the
 * storage node and the broker only, keeping the samples of objects the collector has freed
 * (unlike `node --heap-prof`, which keeps only what is alive at exit: per-message garbage
 * would not show), and writes `<role>-<pid>.heapprofile` at exit. Then
 * tools/heapprofile-top.ts lists the top allocating frames.
 *
 *   mkdir -p /tmp/alloc; export PMQ_ALLOC_SAMPLE_DIR=/tmp/alloc
 *   PMQ_BENCH_NODE_FLAGS="--import tsx --import $PWD/tools/alloc-sample.ts" node dist/cli/pmq.js \
 *     bench --no-machine --rate 10000 --count 30000 --duration 3 --linger-ms 0
 *   node --import tsx tools/heapprofile-top.ts /tmp/alloc/*.heapprofile
 *
 * One sample per 4 KiB allocated on average (the profiler's sampling interval), so sizes are
 * estimates; the profiler itself costs a little CPU per sample.
 *
 * PMQ_ALLOC_SAMPLE_SURVIVORS=1 leaves out the objects a scavenge freed: what remains is what
 * survived the young generation (promoted, then freed by a full collection or alive at exit),
 * i.e. what makes the old generation grow and full collections come.
 */
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';
import { join } from 'node:path';

const role = process.argv.find((arg) => arg === 'storage' || arg === 'broker');
const dir = process.env.PMQ_ALLOC_SAMPLE_DIR ?? '.';

if (role !== undefined) {
  const session = new Session();
  session.connect();
  session.post('HeapProfiler.enable');
  const survivors = process.env.PMQ_ALLOC_SAMPLE_SURVIVORS === '1';
  session.post('HeapProfiler.startSampling', { samplingInterval: 4096,
    includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: !survivors });
  // The in-process inspector answers synchronously, so this runs to the end inside 'exit'.
  process.on('exit', () => {
    session.post('HeapProfiler.stopSampling', (error, result) => {
      if (error !== null) {
        process.stderr.write(`alloc-sample: ${error.message}\n`);
        return;
      }
      writeFileSync(join(dir, `${role}-${process.pid}.heapprofile`),
        JSON.stringify(result.profile));
    });
  });
}
