/**
 * Mutation runs of the durability path (docs/crash-testing.md, "Mutations"): each mutation is a
 * deliberate persistence bug; the tests that claim to prove durability must turn red on it.
 *
 *   npm run mutate                 every mutation (and the unmutated control), every test
 *   npm run mutate -- a-persist-noop c-watermark-first   only these
 *
 * Per mutation: the tree (tracked and untracked, not ignored files: uncommitted work included)
 * is copied to a scratch directory under os.tmpdir() with node_modules linked, the mutation's
 * edits are applied there (each must match exactly once, so a mutation that no longer applies
 * fails loudly instead of passing as a no-op), the native addon is rebuilt there when the
 * mutation touches native/ (else the built one is copied), and each test runs there with tap.
 * This tree is never modified. A test that exits non-zero is red: it caught the mutation.
 * Each test's whole output goes to $TMPDIR/pmq-mutate-<mutation>-<test>.log.
 * Environment: PMQ_MUTATE_NODE_CUTS (default 8) cuts for power-cut-node, PMQ_MUTATE_KEEP=1
 * keeps the scratch directories.
 */
import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, realpathSync,
  writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

const ROOT = new URL('..', import.meta.url).pathname;

interface Edit { file: string; find: string; replace: string }
interface Mutation { name: string; what: string; edits: Edit[] }
interface TestRun { name: string; file: string; env: Record<string, string>; timeoutS: number }

const NODE_CUTS = process.env.PMQ_MUTATE_NODE_CUTS ?? '8';

const TESTS: TestRun[] = [
  { name: 'power-cut-node', file: 'test/crash/power-cut-node.test.ts',
    env: { PMQ_POWERCUT_NODE_CUTS: NODE_CUTS, PMQ_POWERCUT_NODE_SEED: '1000' }, timeoutS: 900 },
  { name: 'power-cut (simulated)', file: 'test/crash/power-cut.test.ts',
    env: { PMQ_POWERCUT_SEED: '1000' }, timeoutS: 300 },
  { name: 'region-shadow (native)', file: 'test/native/region-shadow.test.ts', env: {},
    timeoutS: 120 },
  { name: 'persist-native', file: 'test/integration/persist-native.test.ts', env: {},
    timeoutS: 180 },
  // A stale broker that is not refused never exits: the file times out (red) instead.
  { name: 'broker-fencing', file: 'test/integration/broker-fencing.test.ts', env: {},
    timeoutS: 120 },
];

const PERSIST_RANGE = 'Status persist_range(const Region& region, uint64_t address, ' +
  'uint64_t size_bytes) {\n  PMQ_ASSERT(region.open);\n';
const DATA_PERSIST =
  '        await persistRange(this.region, data.address, data.sizeBytes); // 1. data\n';
const ENTRY_PERSIST =
  '      await persistRange(this.region, address, SEGMENT_ENTRY_SIZE_BYTES); // 2. entry\n';

const MUTATIONS: Mutation[] = [
  { name: 'none', what: 'control: the tree as it is (every test must stay green)', edits: [] },
  { name: 'a-persist-noop', what: '(a) native persist_range returns at once (region.cc)',
    edits: [{ file: 'native/region.cc', find: PERSIST_RANGE,
      replace: `${PERSIST_RANGE}  return Status{};  // MUTATION (a): persists nothing\n` }] },
  { name: 'b-reply-before-persist',
    what: '(b) the storage node answers `persisted` before the persist ran (persist-queue.ts)',
    edits: [{ file: 'storage-node/persist-queue.ts',
      find: '        let failure: unknown = null;\n        try {\n' +
        '          await this.#persistOne(target.request);',
      replace: '        let failure: unknown = null;\n' +
        '        for (const waiter of round) waiter.resolve(resultOf(waiter.request)); // (b)\n' +
        '        try {\n          await this.#persistOne(target.request);' }] },
  { name: 'c-watermark-first',
    what: '(c) the segment-table entry (watermark) persisted before the data (region-store.ts)',
    edits: [{ file: 'storage-node/region-store.ts', find: DATA_PERSIST, replace: '' },
      { file: 'storage-node/region-store.ts', find: ENTRY_PERSIST,
        replace: `${ENTRY_PERSIST}      if (data !== undefined && data.sizeBytes > 0) {\n` +
          '        await persistRange(this.region, data.address, data.sizeBytes); // (c)\n' +
          '      }\n' }] },
  // (d) Metadata in the storage region (docs/broker.md, "Where metadata lives").
  { name: 'd-metadata-unfenced',
    what: '(d1) the storage node appends metadata for any broker instance, at its own epoch ' +
      '(no owner or epoch check on metaAppend; broker-service.ts)',
    edits: [{ file: 'storage-node/broker-service.ts',
      find: '        if (instance !== this.#store.ownerInstance) {',
      replace: '        if (instance !== this.#store.ownerInstance && kind !== \'metaAppend\') {' },
    { file: 'storage-node/broker-service.ts',
      find: '      this.#checkEpoch(m.epoch);\n' +
        '      const use = await this.#metadata.append(m.epoch,',
      replace: '      const use = await this.#metadata.append(this.#store.epoch,' }] },
  { name: 'd-metadata-ack-before-durable',
    what: '(d2) the broker acknowledges a group commit before its metadata append is durable ' +
      '(metadata-store.ts)',
    edits: [{ file: 'broker-node/metadata-store.ts', find: '    this.#apply(op);\n' +
      '    await this.#change(op);\n',
    replace: '    this.#apply(op);\n    void this.#change(op).catch(() => undefined);\n' }] },
  // (e) Leases: the storage node writes each batch's baseOffset before persisting its bytes.
  { name: 'e-patch-after-persist',
    what: '(e) the storage node checks and patches the appended batches after the data and ' +
      'watermark persist, so ' +
      'the durable headers keep the producer\'s 0 (persist-queue.ts)',
    edits: [{ file: 'storage-node/persist-queue.ts',
      find: '      this.#settle(segmentIndex, request.patches ?? [], { position, offsetLast });\n' +
        '      const durable = await this.#store.persistWatermark(segmentIndex, ' +
        '{ position, offsetLast },\n        epoch);\n',
      replace: '      const durable = await this.#store.persistWatermark(segmentIndex, ' +
        '{ position, offsetLast },\n        epoch);\n' +
        '      this.#settle(segmentIndex, request.patches ?? [], { position, offsetLast });' +
        ' // (e)\n',
    }] },
  // (f-i) The storage node's native persist path (native/persist_native.cc).
  { name: 'f-native-data-unpersisted',
    what: '(f) the native persist path persists the segment entry but not the data below it',
    edits: [{ file: 'native/persist_native.cc',
      find: '  region::Status status =\n      region::persist_range(region, segment_address + ' +
        'durable, request.position - durable);\n',
      replace: '  region::Status status;  // MUTATION (f): the data is not persisted\n' }] },
  { name: 'g-native-unchecked',
    what: '(g) the native persist path takes every appended batch as valid (no batch check)',
    edits: [{ file: 'native/persist_native.cc',
      find: '        !batch::check(memory_ + segment_address + piece.position, piece.bytes, ' +
        'piece.records)) {',
      replace: '        false) {  // MUTATION (g)' }] },
  { name: 'h-native-no-floor',
    what: '(h) the native persist path leaves a lease\'s write grant writable below the ' +
      'watermark',
    edits: [{ file: 'native/persist_native.cc',
      find: '  grants_raise(request.segment, Direction::write, end_address);\n',
      replace: '  // MUTATION (h): no floor\n' }] },
  { name: 'i-native-any-broker',
    what: '(i) the native persist path serves endpoints that do not speak for the epoch\'s ' +
      'owner',
    edits: [{ file: 'native/persist_native.cc', find: '  if (!ep->persist_owner || ',
      replace: '  if (' }] },
];

function run(command: string, args: string[], cwd: string, env: Record<string, string> = {},
  timeoutS = 600): { code: number; output: string } {
  const result = spawnSync(command, args, { cwd, env: { ...process.env, ...env },
    encoding: 'utf8', timeout: timeoutS * 1000, maxBuffer: 64 << 20 });
  return { code: result.status ?? -1, output: `${result.stdout ?? ''}${result.stderr ?? ''}` };
}

/** A copy of the tree (tracked and untracked, not ignored) with node_modules linked. */
function scratchTree(native: boolean): string {
  const dir = mkdtempSync(join(tmpdir(), 'pmq-mutate-'));
  const listed = run('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'],
    ROOT);
  if (listed.code !== 0) throw new Error(`git ls-files failed: ${listed.output}`);
  for (const file of new Set(listed.output.split('\0').filter((f) => f !== ''))) {
    if (file === 'node_modules') continue;
    mkdirSync(dirname(join(dir, file)), { recursive: true });
    try {
      cpSync(join(ROOT, file), join(dir, file));
    } catch (error) {
      if ((error as { code?: string }).code !== 'ENOENT') throw error; // deleted, not staged
    }
  }
  symlinkSync(realpathSync(join(ROOT, 'node_modules')), join(dir, 'node_modules'));
  if (!native) cpSync(join(ROOT, 'build', 'Release'), join(dir, 'build', 'Release'),
    { recursive: true });
  return dir;
}

function apply(dir: string, mutation: Mutation): void {
  for (const edit of mutation.edits) {
    const path = join(dir, edit.file);
    const text = readFileSync(path, 'utf8');
    const count = text.split(edit.find).length - 1;
    if (count !== 1) {
      throw new Error(`mutation ${mutation.name}: the text to replace occurs ${count} times ` +
        `in ${edit.file} (expected once): update the mutation to the code`);
    }
    writeFileSync(path, text.replace(edit.find, () => edit.replace));
  }
}

interface Row { mutation: string; test: string; verdict: 'red' | 'green' | 'error'; note: string }

/** The first failed assertion, and how many power cuts failed when the test says so. */
function failureNote(output: string): string {
  const failed = output.split('\n').find((line) => /^\s*not ok /.test(line)) ?? '';
  const cuts = /power-cut-node: (\d+) cuts \(first seed \d+\), (\d+) failed/.exec(output);
  const share = cuts === null ? '' : `${cuts[2]} of ${cuts[1]} cuts red; `;
  return `${share}${failed.trim().slice(0, 140)}`;
}

function runMutation(mutation: Mutation): Row[] {
  const native = mutation.edits.some((edit) => edit.file.startsWith('native/'));
  const dir = scratchTree(native);
  const rows: Row[] = [];
  try {
    apply(dir, mutation);
    if (native) {
      const build = run('npx', ['node-gyp', 'rebuild', '--jobs=max', '--loglevel=warn'], dir);
      if (build.code !== 0) {
        process.stdout.write(`${mutation.name} | build | error | ${build.output.slice(-400)}\n`);
        return [{ mutation: mutation.name, test: 'build', verdict: 'error',
          note: build.output.slice(-400) }];
      }
    }
    for (const test of TESTS) {
      const started = Date.now();
      const result = run('npx', ['tap', '--timeout', String(test.timeoutS), test.file], dir,
        test.env, test.timeoutS + 60);
      const seconds = Math.round((Date.now() - started) / 1000);
      const log = join(tmpdir(), `pmq-mutate-${mutation.name}-${test.name.split(' ')[0]}.log`);
      writeFileSync(log, result.output);
      rows.push({ mutation: mutation.name, test: test.name,
        verdict: result.code === 0 ? 'green' : 'red',
        note: `${seconds} s ${result.code === 0 ? '' : failureNote(result.output)}`.trim() });
      process.stdout.write(`${mutation.name} | ${test.name} | ${rows.at(-1)!.verdict} | ` +
        `${rows.at(-1)!.note} (output: ${log})\n`);
    }
  } catch (error) {
    rows.push({ mutation: mutation.name, test: '-', verdict: 'error', note: String(error) });
    process.stdout.write(`${mutation.name} | - | error | ${String(error)}\n`);
  } finally {
    if (process.env.PMQ_MUTATE_KEEP === '1') process.stdout.write(`kept ${dir}\n`);
    else rmSync(dir, { recursive: true, force: true });
  }
  return rows;
}

const wanted = process.argv.slice(2);
const unknown = wanted.filter((name) => !MUTATIONS.some((m) => m.name === name));
if (unknown.length > 0) {
  process.stderr.write(`unknown mutation(s) ${unknown.join(', ')}; known: ` +
    `${MUTATIONS.map((m) => m.name).join(', ')}\n`);
  process.exit(2);
}
const chosen = wanted.length === 0 ? MUTATIONS : MUTATIONS.filter((m) => wanted.includes(m.name));
const rows = chosen.flatMap((mutation) => {
  process.stdout.write(`# ${mutation.name}: ${mutation.what}\n`);
  return runMutation(mutation);
});
process.stdout.write('\n| mutation | test | result | note |\n| --- | --- | --- | --- |\n');
for (const row of rows) {
  process.stdout.write(`| ${row.mutation} | ${row.test} | ${row.verdict} | ${row.note} |\n`);
}
// Every real mutation must be caught by some test; the control must be green everywhere.
const escaped = chosen.filter((m) => m.name !== 'none' && !rows.some((r) =>
  r.mutation === m.name && r.verdict === 'red'));
const controlRed = rows.some((r) => r.mutation === 'none' && r.verdict !== 'green');
const errors = rows.some((r) => r.verdict === 'error');
if (escaped.length > 0) process.stdout.write(`ESCAPED: ${escaped.map((m) => m.name)}\n`);
if (controlRed) process.stdout.write('CONTROL RED: the unmutated tree fails a test\n');
process.exit(escaped.length > 0 || controlRed || errors ? 1 : 0);
