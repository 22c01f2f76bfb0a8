/** `pmq keygen --out FILE [--force]`: a new cluster key file (docs/security.md). */
import type { Command } from 'commander';

import { writeClusterKeyFile } from './cluster-key-file.js';

export function registerKeygenCommand(program: Command): void {
  program.command('keygen')
    .description('write a new cluster key file (32 random bytes as hex, mode 0600): give the ' +
      'same file to every storage node and broker of a cluster')
    .requiredOption('--out <file>', 'where to write the key')
    .option('--force', 'replace an existing file (every node then needs the new one)', false)
    .action((opts: { out: string; force: boolean }) => {
      writeClusterKeyFile(opts.out, { force: opts.force });
      process.stdout.write(`pmq keygen: wrote a new cluster key to ${opts.out} (mode 0600); ` +
        'pass it to every `pmq storage` and `pmq broker` with --cluster-key-file\n');
    });
}
