/**
 * Cluster keys for tests: every `pmq storage` / `pmq broker` a test starts needs one
 * (docs/security.md). `testKeyFile(dir)` writes `dir/cluster.key` once (mode 0600, as
 * `pmq keygen` does) and returns its path; `testKey(path)` reads it back as a ClusterKey for a
 * test process that speaks as the broker.
 */
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

import type { ClusterKey } from '../../common/auth/keys.js';
import { parseClusterKey, writeClusterKeyFile } from '../../cli/cluster-key-file.js';

export function testKeyFile(dir: string, name = 'cluster.key'): string {
  const path = join(dir, name);
  if (!existsSync(path)) {
    mkdirSync(dir, { recursive: true });
    writeClusterKeyFile(path);
  }
  return path;
}

export function testKey(path: string): ClusterKey {
  return parseClusterKey(readFileSync(path, 'utf8'), path);
}
