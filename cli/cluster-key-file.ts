/**
 * The cluster key file (docs/security.md, "Broker ↔ storage: the cluster key"): one line of 64
 * hex characters, the 32 random bytes every storage node and broker of a cluster share.
 * Written with mode 0600, atomically (a temporary file in the same directory, fsynced, then
 * renamed into place), never over an existing file unless `force`. Reading warns when group or
 * others may read the file, and says exactly what is wrong with a missing, short or garbled one.
 */
import { randomBytes } from 'node:crypto';
import {
  closeSync, constants, existsSync, fsyncSync, linkSync, openSync, readFileSync, renameSync,
  statSync, unlinkSync, writeSync,
} from 'node:fs';
import { basename, dirname, join } from 'node:path';

import { CLUSTER_KEY_BYTES, ClusterKey } from '../common/auth/keys.js';
import { PmqError } from '../common/errors.js';

export const CLUSTER_KEY_ENV = 'PMQ_CLUSTER_KEY_FILE';
export const NO_CLUSTER_KEY = 'no cluster key: pass --cluster-key-file FILE (make one with ' +
  '`pmq keygen --out FILE`)';

const HEX_CHARS = CLUSTER_KEY_BYTES * 2;

function keyError(message: string, cause?: unknown): PmqError {
  return new PmqError('PMQ_ERR_CLUSTER_KEY', message, { cause });
}

/** Writes a fresh random key to `path` (mode 0600, atomically); returns the key's bytes. */
export function writeClusterKeyFile(path: string, opts: { force?: boolean } = {}): Uint8Array {
  const key = ClusterKey.generate();
  const exists = (): PmqError => keyError(`${path} exists: a cluster's nodes must keep their ` +
    'key; pass --force to replace it (then give every storage node and broker the new file)');
  if (opts.force !== true && existsSync(path)) throw exists();
  const temp = join(dirname(path), `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`);
  let fd: number;
  try {
    fd = openSync(temp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
  } catch (error) {
    throw keyError(`cannot create a key file in ${dirname(path)}: ` +
      `${(error as NodeJS.ErrnoException).code ?? String(error)}`, error);
  }
  try {
    try {
      writeSync(fd, `${Buffer.from(key).toString('hex')}\n`);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    // link() refuses an existing name atomically; rename() replaces it atomically (--force).
    if (opts.force === true) renameSync(temp, path);
    else linkSync(temp, path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') throw exists();
    throw keyError(`writing ${path} failed: ${String(error)}`, error);
  } finally {
    try { unlinkSync(temp); } catch { /* renamed */ }
  }
  fsyncDirectory(dirname(path));
  return key;
}

function fsyncDirectory(dir: string): void {
  try {
    const fd = openSync(dir, 'r');
    try { fsyncSync(fd); } finally { closeSync(fd); }
  } catch {
    // Some file systems refuse fsync on directories; the file itself is durable.
  }
}

/** Parses a key file's text: exactly 64 hex characters, optionally followed by a newline. */
export function parseClusterKey(text: string, path: string): ClusterKey {
  const line = text.replace(/\r?\n$/, '');
  if (line.length === 0) throw keyError(`${path} is empty: make a key with \`pmq keygen\``);
  if (line.includes('\n')) throw keyError(`${path} holds more than one line: it must be ` +
    `exactly ${HEX_CHARS} hex characters`);
  if (!/^[0-9a-fA-F]*$/.test(line)) {
    throw keyError(`${path} is not a cluster key: expected ${HEX_CHARS} hex characters ` +
      '(0-9, a-f), found other characters');
  }
  if (line.length !== HEX_CHARS) {
    throw keyError(`${path} holds ${line.length} hex characters, a cluster key is ` +
      `${HEX_CHARS} (${CLUSTER_KEY_BYTES} bytes): ${line.length < HEX_CHARS ? 'truncated?' :
        'not a pmq key file?'}`);
  }
  return ClusterKey.from(new Uint8Array(Buffer.from(line, 'hex')));
}

/**
 * Reads a key file. `warn` is told when group or others may read it (the key lets anyone who
 * reaches a storage node act as the broker).
 */
export function readClusterKeyFile(path: string, warn: (message: string) => void): ClusterKey {
  let text: string;
  let mode: number;
  try {
    mode = statSync(path).mode;
    text = readFileSync(path, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') {
      throw keyError(`cluster key file ${path} does not exist: make one with ` +
        `\`pmq keygen --out ${path}\` and give the same file to every storage node and broker`,
      error);
    }
    throw keyError(`cannot read cluster key file ${path}: ${code ?? String(error)}`, error);
  }
  if ((mode & 0o077) !== 0) {
    warn(`cluster key file ${path} can be read by group or others (mode ` +
      `${(mode & 0o777).toString(8)}): chmod 600 ${path}`);
  }
  return parseClusterKey(text, path);
}

/** The key file a command names with --cluster-key-file, else PMQ_CLUSTER_KEY_FILE, or throws. */
export function clusterKeyFilePath(flag: string | undefined): string {
  const path = flag ?? process.env[CLUSTER_KEY_ENV];
  if (path === undefined || path.length === 0) throw keyError(NO_CLUSTER_KEY);
  return path;
}
