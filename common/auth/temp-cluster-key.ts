/**
 * TEMP until auth-cluster merges: the cluster key brokers and storage nodes fall back to when
 * none is passed, so that processes started without `--cluster-key-file` (not on this branch
 * yet) still verify each other's session tickets. It is public, so it protects nothing; the
 * auth-cluster work makes the key a required option and this file goes away.
 */
import { createHash } from 'node:crypto';

import { ClusterKey } from './keys.js';

export const TEMP_DEFAULT_CLUSTER_KEY = ClusterKey.from(new Uint8Array(createHash('sha256')
  .update('pmq TEMP default cluster key until auth-cluster merges').digest()));
