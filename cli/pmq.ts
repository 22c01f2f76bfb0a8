#!/usr/bin/env node
/**
 * The `pmq` command. Each subcommand lives in its own file and registers itself here.
 * Operating errors (PmqError) print one line saying what to do and exit 1; wrong flags are
 * commander's errors (exit 1 with usage); anything else is a bug and prints its stack.
 */
import { Command } from 'commander';

import { registerAclCommand } from './acl.js';
import { registerBenchCommand } from './bench.js';
import { registerBrokerCommand } from './broker.js';
import { registerConsumeCommand } from './consume.js';
import { registerDevCommand } from './dev.js';
import { registerGroupCommand } from './group.js';
import { registerInspectCommand } from './inspect.js';
import { registerKeygenCommand } from './keygen.js';
import { registerProduceCommand } from './produce.js';
import { reportFatal } from './report.js';
import { registerStorageCommand } from './storage.js';
import { registerQuarantineCommand } from './quarantine.js';
import { registerTopicCommand } from './topic.js';
import { registerUserCommand } from './user.js';

function main(argv: string[]): void {
  const program = new Command('pmq')
    .description('pmq: a message broker on persistent memory and one-sided RDMA')
    .version('0.1.0')
    .showHelpAfterError('(run with --help for usage)');
  registerStorageCommand(program);
  registerBrokerCommand(program);
  registerDevCommand(program);
  registerKeygenCommand(program);
  registerTopicCommand(program);
  registerQuarantineCommand(program);
  registerProduceCommand(program);
  registerConsumeCommand(program);
  registerGroupCommand(program);
  registerInspectCommand(program);
  registerBenchCommand(program);
  registerUserCommand(program);
  registerAclCommand(program);
  // The reader of our output went away (`pmq ... | head`): stop quietly, as a pipeline expects,
  // unless the command listens itself (consume commits its positions first).
  process.stdout.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code === 'EPIPE' && process.stdout.listenerCount('error') === 1) process.exit(0);
  });
  program.parseAsync(argv).catch(reportFatal);
}

main(process.argv);
