/**
 * `pmq user add|list|delete --auth-file F`: the users of client authentication (docs/cli.md,
 * docs/security.md). The file keeps each user's SCRAM-SHA-256 salt, iterations, StoredKey and
 * ServerKey, never the password. A running broker picks changes up within a second.
 */
import { randomBytes } from 'node:crypto';

import { type Command, Option } from 'commander';

import { checkUserName, withoutUser, withUser } from '../common/auth/auth-file.js';
import {
  SCRAM_ITERATIONS_DEFAULT, SCRAM_ITERATIONS_MAX, SCRAM_ITERATIONS_MIN, SCRAM_SALT_BYTES,
  scramCredentials,
} from '../common/auth/scram.js';
import { readAuthFile, readPassword, writeAuthFile } from './auth-file-io.js';
import { integerArgument } from './options.js';

interface AuthFileOption { authFile: string }

export function authFileOption(): Option {
  return new Option('--auth-file <file>', 'the auth file (users and ACLs)')
    .env('PMQ_AUTH_FILE').makeOptionMandatory();
}

export function registerUserCommand(program: Command): void {
  const user = program.command('user')
    .description('manage the users of client authentication (an auth file)');
  user.command('add').description('add a user, or set a new password')
    .argument('<name>', 'user name: 1..128 of A-Z a-z 0-9 . _ @ -')
    .addOption(authFileOption())
    .option('--password-file <file>', 'read the password from this file (first line); ' +
      'else env PMQ_PASSWORD, else a prompt')
    .addOption(new Option('--iterations <n>', 'PBKDF2 iterations')
      .default(SCRAM_ITERATIONS_DEFAULT)
      .argParser(integerArgument('--iterations', SCRAM_ITERATIONS_MIN, SCRAM_ITERATIONS_MAX)))
    .action(async (name: string, opts: AuthFileOption & { passwordFile?: string;
      iterations: number }) => {
      checkUserName(name);
      const file = readAuthFile(opts.authFile, true);
      const password = await readPassword(opts.passwordFile, `user ${name}`);
      const credentials = scramCredentials(password,
        new Uint8Array(randomBytes(SCRAM_SALT_BYTES)), opts.iterations);
      writeAuthFile(opts.authFile, withUser(file, { name, ...credentials }));
      process.stderr.write(`pmq: user ${name} saved in ${opts.authFile}\n`);
    });
  user.command('list').description('list users').addOption(authFileOption())
    .option('--json', 'print JSON instead of lines', false)
    .action((opts: AuthFileOption & { json: boolean }) => {
      const names = readAuthFile(opts.authFile, false).users.map((u) => u.name).sort();
      process.stdout.write(opts.json ? `${JSON.stringify(names)}\n`
        : names.map((name) => `${name}\n`).join(''));
    });
  user.command('delete').description('delete a user and its ACLs')
    .argument('<name>', 'user name').addOption(authFileOption())
    .action((name: string, opts: AuthFileOption) => {
      writeAuthFile(opts.authFile, withoutUser(readAuthFile(opts.authFile, false), name));
      process.stderr.write(`pmq: user ${name} deleted from ${opts.authFile}\n`);
    });
}
