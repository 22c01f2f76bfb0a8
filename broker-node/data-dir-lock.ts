/**
 * One broker per data directory (issue 10: two brokers sharing one directory made the next
 * owner lose topics and committed offsets). `broker.lock` in the directory names the process
 * that holds it (pid and host); it is created exclusively (O_EXCL), so of two brokers starting
 * at once only one gets it. A lock whose process is gone (same host, no such pid: a SIGKILLed
 * broker) is taken over, and so is one written for another directory (the lock names its
 * directory's device and inode: a copied data directory carries the original's lock); one of
 * a live process, or of another host (a shared file system, where liveness cannot be
 * checked), refuses the start with PMQ_ERR_DATA_DIR_LOCKED.
 */
import { closeSync, openSync, readFileSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';

import { PmqError } from '../common/errors.js';

export const LOCK_FILE = 'broker.lock';

interface Holder { pid: number; host: string; startedAt: string; dir: string }

export interface DataDirLock {
  readonly path: string;
  release(): void;
}

function readHolder(path: string): Holder | null {
  try {
    const holder = JSON.parse(readFileSync(path, 'utf8')) as Partial<Holder>;
    if (!Number.isSafeInteger(holder.pid) || typeof holder.host !== 'string') return null;
    return { pid: holder.pid!, host: holder.host, startedAt: String(holder.startedAt ?? ''),
      dir: String(holder.dir ?? '') };
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    return { pid: -1, host: '', startedAt: '', dir: '' }; // unreadable, garbled: stale
  }
}

function alive(pid: number): boolean {
  if (pid <= 0) return false;
  if (pid === process.pid) return false; // a failed start of this very process left it
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function locked(dir: string, holder: Holder): PmqError {
  const where = holder.host === hostname() ? `process ${holder.pid}` :
    `process ${holder.pid} on host ${holder.host}`;
  return new PmqError('PMQ_ERR_DATA_DIR_LOCKED', `data directory ${dir} is in use by the broker ` +
    `${where} (since ${holder.startedAt}): stop it, or give this broker its own --data-dir` +
    (holder.host === hostname() ? '' : `; if that broker is gone, delete ${join(dir, LOCK_FILE)}`));
}

/** Takes the directory's lock (the directory exists); throws PMQ_ERR_DATA_DIR_LOCKED. */
export function lockDataDir(dir: string): DataDirLock {
  const path = join(dir, LOCK_FILE);
  const stat = statSync(dir);
  const identity = `${stat.dev}:${stat.ino}`;
  const me: Holder = { pid: process.pid, host: hostname(), startedAt: new Date().toISOString(),
    dir: identity };
  for (let attempt = 0; attempt < 3; attempt += 1) {
    let fd: number;
    try {
      fd = openSync(path, 'wx', 0o644);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') {
        throw new PmqError('PMQ_ERR_METADATA_IO', `cannot create ${path}: ${String(error)}`);
      }
      const holder = readHolder(path);
      const ours = holder !== null && holder.dir === identity; // not a copy's
      if (holder !== null && ours && (holder.host !== me.host || alive(holder.pid))) {
        throw locked(dir, holder);
      }
      try { unlinkSync(path); } catch { /* another starter removed it first: try again */ }
      continue;
    }
    try {
      writeSync(fd, `${JSON.stringify(me)}\n`);
    } finally {
      closeSync(fd);
    }
    return { path, release: () => {
      if (readHolder(path)?.pid === me.pid) unlinkSync(path);
    } };
  }
  throw new PmqError('PMQ_ERR_DATA_DIR_LOCKED', `data directory ${dir}: could not take ` +
    `${LOCK_FILE} (other brokers are starting on it at the same time)`, { retriable: true });
}
