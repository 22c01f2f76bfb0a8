// Every error code the sources use is documented in docs/error-codes.md.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';

import t from 'tap';

const ROOT = new URL('../..', import.meta.url).pathname;
const DIRS = ['common', 'broker-node', 'storage-node', 'clients', 'cli', 'native', 'rpc'];
/** Owned by work in flight on other branches, documented there. */
const ELSEWHERE = new Set(['PMQ_ERR_CLUSTER_KEY']);

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return sources(path);
    return name.endsWith('.ts') ? [path] : [];
  });
}

t.test('every PMQ_ERR_ code in the sources is in docs/error-codes.md', async (t) => {
  const doc = readFileSync(join(ROOT, 'docs/error-codes.md'), 'utf8');
  const codes = new Set(DIRS.flatMap((dir) => sources(join(ROOT, dir)))
    .flatMap((file) => readFileSync(file, 'utf8').match(/PMQ_ERR_[A-Z0-9_]*[A-Z0-9]\b/g) ?? []));
  t.ok(codes.has('PMQ_ERR_DENIED'), 'the scan finds codes');
  const missing = [...codes].filter((code) => !ELSEWHERE.has(code) &&
    !new RegExp(`\\b${code}\\b`).test(doc));
  t.same(missing, [], 'undocumented codes');
});
