/**
 * Reading and writing the auth file for `pmq user` and `pmq acl` (format:
 * common/auth/auth-file.ts), and where a password comes from. Writes are atomic: a temporary
 * file beside the target (mode 0600: it holds salted keys), fsynced, then renamed over it, so
 * the broker's reload (broker-node/auth-store.ts) sees the old file or the new one, never half.
 */
import { closeSync, fsyncSync, openSync, readFileSync, renameSync, rmSync, writeSync } from
  'node:fs';
import { basename, dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { Writable } from 'node:stream';

import {
  EMPTY_AUTH_FILE, formatAuthFile, parseAuthFile, type AuthFile,
} from '../common/auth/auth-file.js';
import { PmqError } from '../common/errors.js';

/** The file's contents; a file that does not exist yet is empty (the first `user add`). */
export function readAuthFile(path: string, missingIsEmpty: boolean): AuthFile {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT' && missingIsEmpty) {
      return EMPTY_AUTH_FILE;
    }
    throw new PmqError('PMQ_ERR_AUTH_FILE', `cannot read the auth file ${path}: ` +
      `${(error as Error).message}`, { cause: error });
  }
  return parseAuthFile(text);
}

export function writeAuthFile(path: string, file: AuthFile): void {
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.tmp`);
  try {
    const fd = openSync(tmp, 'w', 0o600);
    try {
      writeSync(fd, formatAuthFile(file));
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
  } catch (error) {
    rmSync(tmp, { force: true });
    throw new PmqError('PMQ_ERR_AUTH_FILE', `cannot write the auth file ${path}: ` +
      `${(error as Error).message}`, { cause: error });
  }
}

/**
 * A password: from `passwordFile` (its first line), else env PMQ_PASSWORD, else a prompt when
 * stdin is a terminal (not echoed), else an error.
 */
export async function readPassword(passwordFile: string | undefined, what: string):
  Promise<string> {
  if (passwordFile !== undefined) {
    let text: string;
    try {
      text = readFileSync(passwordFile, 'utf8');
    } catch (error) {
      throw new PmqError('PMQ_ERR_ARGUMENT', `cannot read --password-file ${passwordFile}: ` +
        `${(error as Error).message}`);
    }
    return checkPassword(text.split(/\r?\n/)[0] ?? '');
  }
  const env = process.env.PMQ_PASSWORD;
  if (env !== undefined) return checkPassword(env);
  if (process.stdin.isTTY !== true) {
    throw new PmqError('PMQ_ERR_ARGUMENT', `${what} needs a password: pass --password-file ` +
      'FILE or set PMQ_PASSWORD (stdin is not a terminal to ask on)');
  }
  return checkPassword(await prompt(`password for ${what}: `));
}

function checkPassword(password: string): string {
  if (password.length === 0) throw new PmqError('PMQ_ERR_ARGUMENT', 'the password is empty');
  return password;
}

async function prompt(question: string): Promise<string> {
  process.stderr.write(question);
  const muted = new Writable({ write: (_chunk, _encoding, done) => done() });
  const rl = createInterface({ input: process.stdin, output: muted, terminal: true });
  try {
    return await new Promise<string>((resolve) => rl.once('line', resolve));
  } finally {
    rl.close();
    process.stderr.write('\n');
  }
}
