/**
 * `pmq dev`: the embedded default for development, one command on one machine: a storage node
 * on a /dev/shm region (and, once the broker exists, a broker in front of it). Ctrl-C stops it.
 */
import type { Command } from 'commander';

import { runStorage } from './storage.js';
import { addStorageOptions, logLevelOption, type StorageCliOptions } from './options.js';

export function registerDevCommand(program: Command): void {
  const command = program.command('dev')
    .description('run a local development cluster: a storage node on a /dev/shm region')
    .addOption(logLevelOption());
  addStorageOptions(command, '127.0.0.1:7100').action(async (opts: StorageCliOptions) => {
    await runStorage(opts, 'pmq dev: storage node');
    process.stdout.write('pmq dev: running; press Ctrl-C to stop\n');
  });
}
