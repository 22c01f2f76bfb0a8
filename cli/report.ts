/**
 * How `pmq` reports a failure: an operating error (PmqError) as one line saying what to do, with
 * its code, and exit status 1; anything else is a bug and prints its stack.
 */
import { PmqError } from '../common/errors.js';

export function reportFatal(error: unknown): void {
  if (error instanceof PmqError) {
    process.stderr.write(`pmq: ${cliMessage(error)} [${error.code}]\n`);
  } else {
    process.stderr.write(`pmq: unexpected failure: ${(error as Error)?.stack ?? String(error)}\n`);
  }
  process.exitCode = 1;
}

/** The client library's advice names library calls; on the command line, name commands. */
function cliMessage(error: PmqError): string {
  const topic = (error as PmqError & { topic?: unknown }).topic;
  if (error.code === 'PMQ_ERR_UNKNOWN_TOPIC' && typeof topic === 'string') {
    return `topic ${topic} does not exist: create it (pmq topic create ${topic} ` +
      '--partitions N) or check the name (pmq topic list)';
  }
  return error.message;
}

/** "1 record", "2 records". */
export function plural(count: number, noun: string): string {
  return `${count} ${noun}${count === 1 ? '' : 's'}`;
}
