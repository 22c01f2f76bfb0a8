#!/usr/bin/env node
/**
 * The `pmq` command. Each subcommand lives in its own file and registers itself here.
 * Operating errors (PmqError) print one line saying what to do and exit 1; wrong flags are
 * commander's errors (exit 1 with usage); anything else is a bug and prints its stack.
 */
import { Command } from 'commander';

import { PmqError } from '../common/errors.js';
import { registerBrokerCommand } from './broker.js';
import { registerDevCommand } from './dev.js';
import { registerStorageCommand } from './storage.js';

function main(argv: string[]): void {
  const program = new Command('pmq')
    .description('pmq: a message broker on persistent memory and one-sided RDMA')
    .version('0.1.0')
    .showHelpAfterError('(run with --help for usage)');
  registerStorageCommand(program);
  registerBrokerCommand(program);
  registerDevCommand(program);
  program.parseAsync(argv).catch(reportFatal);
}

export function reportFatal(error: unknown): void {
  if (error instanceof PmqError) {
    process.stderr.write(`pmq: ${error.message} [${error.code}]\n`);
  } else {
    process.stderr.write(`pmq: unexpected failure: ${(error as Error)?.stack ?? String(error)}\n`);
  }
  process.exitCode = 1;
}

main(process.argv);
