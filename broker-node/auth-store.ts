/**
 * The broker's copy of its auth file (`--auth-file`, format in common/auth/auth-file.ts):
 * users' SCRAM credentials and the ACLs. Client authentication is on exactly when a path is
 * given.
 *
 * Lifecycle: `AuthStore.open` reads and parses the file (a file that does not parse stops the
 * broker at start); then every AUTH_RELOAD_POLL_MS it compares the file's mtime and size with
 * the last ones seen and reloads it when they changed. A reload that fails (unreadable, bad
 * JSON, a bad entry) keeps the old contents and logs an error, so a half-edited file never
 * locks everyone out or lets everyone in. `close()` stops the polling. Concurrency: JS thread
 * only; readers see one whole file's contents at a time.
 */
import { readFileSync, statSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';

import type { AclEntry } from '../common/auth/acl.js';
import { EMPTY_AUTH_FILE, parseAuthFile, type AuthFile, type AuthUser } from
  '../common/auth/auth-file.js';
import { PmqError } from '../common/errors.js';
import type { Logger } from '../common/log.js';

export const AUTH_RELOAD_POLL_MS = 1000;

export class AuthStore {
  #contents: AuthFile;
  #seen: string;
  #timer: NodeJS.Timeout | undefined;
  #reloading = false;

  private constructor(readonly path: string | null, contents: AuthFile, seen: string,
    private readonly log: Logger) {
    this.#contents = contents;
    this.#seen = seen;
  }

  /** Authentication off: no users, no ACL checks. */
  static off(log: Logger): AuthStore {
    return new AuthStore(null, EMPTY_AUTH_FILE, '', log);
  }

  /** Reads the file now (PMQ_ERR_AUTH_FILE when it is missing or bad) and polls it. */
  static open(path: string, log: Logger): AuthStore {
    let text: string;
    let seen: string;
    try {
      seen = stamp(statSync(path));
      text = readFileSync(path, 'utf8');
    } catch (error) {
      throw new PmqError('PMQ_ERR_AUTH_FILE', `cannot read the auth file ${path}: ` +
        `${(error as Error).message}: create it with \`pmq user add NAME --auth-file ${path}\``,
      { cause: error });
    }
    const store = new AuthStore(path, parseAuthFile(text), seen, log);
    store.#timer = setInterval(() => { void store.poll(); }, AUTH_RELOAD_POLL_MS);
    store.#timer.unref();
    log.info({ path, users: store.#contents.users.length, acls: store.#contents.acls.length },
      'auth file loaded');
    return store;
  }

  get enabled(): boolean {
    return this.path !== null;
  }

  get acls(): readonly AclEntry[] {
    return this.#contents.acls;
  }

  user(name: string): AuthUser | undefined {
    return this.#contents.users.find((user) => user.name === name);
  }

  /** Reloads when the file's mtime or size changed; exported for tests. */
  async poll(): Promise<void> {
    if (this.path === null || this.#reloading) return;
    this.#reloading = true;
    try {
      const seen = stamp(await stat(this.path));
      if (seen === this.#seen) return;
      this.#seen = seen;
      this.#contents = parseAuthFile(await readFile(this.path, 'utf8'));
      this.log.info({ path: this.path, users: this.#contents.users.length,
        acls: this.#contents.acls.length }, 'auth file reloaded');
    } catch (error) {
      this.log.error({ path: this.path, err: (error as Error).message },
        'auth file not reloaded, keeping the old contents');
    } finally {
      this.#reloading = false;
    }
  }

  close(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer);
  }
}

function stamp(stats: { mtimeMs: number; size: number; ino: number }): string {
  return `${stats.mtimeMs}/${stats.size}/${stats.ino}`;
}
