// `pmq inspect` is read-only (issue 13, bug 9): it used to open the region read-write (for
// its lock), so a region file of mode 0444, or one owned by another user, could not be
// inspected. Now it needs read permission only, still refuses a region a live node holds,
// and leaves the file as it was. As root (who may write any file), the inspect also runs as
// the unprivileged user `nobody` against root's 0444 file, which is what proves it.
import { spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import t from 'tap';

import { collectRun, type PmqRun } from '../helpers/child-run.js';
import { testKeyFile } from '../helpers/cluster-key.js';
import { startStorage } from '../helpers/storage-process.js';

const PMQ = [`--import=${import.meta.resolve('tsx')}`,
  new URL('../../cli/pmq.ts', import.meta.url).pathname];
const NOBODY = 65534;

async function inspect(path: string, uid?: number): Promise<PmqRun> {
  // As another user, without tap's NODE_OPTIONS (its hooks write into root's .tap/ at exit).
  const env = uid === undefined ? { ...process.env, UCX_NET_DEVICES: 'lo' }
    : { PATH: process.env.PATH, UCX_NET_DEVICES: 'lo' };
  return collectRun(spawn(process.execPath, [...PMQ, 'inspect', path], {
    stdio: ['ignore', 'pipe', 'pipe'], env,
    ...(uid === undefined ? {} : { uid, gid: uid, cwd: '/' }) }));
}

const fingerprint = (path: string): string =>
  `${statSync(path).mtimeMs} ${createHash('sha256').update(readFileSync(path)).digest('hex')}`;

const dir = mkdtempSync('/dev/shm/pmq-inspect-ro-');
chmodSync(dir, 0o755);  // `nobody` must reach the file (and only read it)
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const region = join(dir, 'region');

t.test('a live node\'s region is refused; a stopped node\'s 0444 region is inspected',
  async (t) => {
    const storage = await startStorage(testKeyFile(join(dir, 'keys')), ['--path', region,
      '--size', '8MiB', '--segment-size', '1MiB']);
    const live = await inspect(region);
    t.equal(live.code, 1, 'exit 1 while the node holds the region');
    t.match(live.stderr, /PMQ_ERR_REGION_LOCKED/);
    t.equal(await storage.kill('SIGINT'), 0, 'the node stops cleanly');

    chmodSync(region, 0o444);
    const before = fingerprint(region);
    const run = await inspect(region);
    t.equal(run.code, 0, run.stderr);
    t.match(run.stdout, /every CRC and structure check passed/);
    t.match(run.stdout, /region .*: 8 MiB, shm/);
    t.equal(fingerprint(region), before, 'the file is unchanged (bytes and mtime)');
  });

/** Whether a user other than the owner can reach and read `path` (o+x on every directory). */
function othersCanRead(path: string): boolean {
  if ((statSync(path).mode & 0o004) === 0) return false;
  for (let at = dirname(path); ; at = dirname(at)) {
    if ((statSync(at).mode & 0o001) === 0) return false;
    if (at === '/') return true;
  }
}

const CHECKOUT_READABLE = othersCanRead(fileURLToPath(new URL('../../cli/pmq.ts',
  import.meta.url))) && othersCanRead(fileURLToPath(import.meta.resolve('tsx')));

t.test('another user with read permission only can inspect it', {
  skip: process.getuid?.() !== 0 ? 'needs root to run a child as another user'
    : !CHECKOUT_READABLE ? 'the checkout is not readable by other users (a 0700 home): ' +
      '`nobody` could not run pmq at all' : false,
}, async (t) => {
  t.equal(statSync(region).uid, 0, 'the region is root\'s');
  const before = fingerprint(region);
  const run = await inspect(region, NOBODY);
  t.equal(run.code, 0, run.stderr);
  t.match(run.stdout, /every CRC and structure check passed/);
  t.equal(fingerprint(region), before, 'the file is unchanged');
});
