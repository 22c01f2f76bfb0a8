/**
 * `pmq acl add|list|remove --auth-file F`: what authenticated users may do (docs/cli.md,
 * docs/security.md). One entry per (principal, topic or group): `add` merges operations into
 * it, `remove` takes them out (the entry goes with its last operation).
 */
import { type Command, InvalidArgumentError } from 'commander';

import {
  ACL_OPERATIONS, ACL_WILDCARD, type AclEntry, type AclOperation,
} from '../common/auth/acl.js';
import { checkResourceName, checkUserName, withAcl, withoutAcl } from
  '../common/auth/auth-file.js';
import { PmqError } from '../common/errors.js';
import { readAuthFile, writeAuthFile } from './auth-file-io.js';
import { formatTable } from './topic.js';
import { authFileOption } from './user.js';

interface AclOptions {
  authFile: string;
  principal: string;
  topic?: string;
  group?: string;
  operation: AclOperation[];
}

function operationsArgument(text: string): AclOperation[] {
  const ops = text.split(',').map((op) => op.trim());
  for (const op of ops) {
    if (!ACL_OPERATIONS.includes(op as AclOperation)) {
      throw new InvalidArgumentError(`operations are ${ACL_OPERATIONS.join(', ')}; got ${op}`);
    }
  }
  return ops as AclOperation[];
}

function entryOf(opts: AclOptions): AclEntry {
  if ((opts.topic === undefined) === (opts.group === undefined)) {
    throw new PmqError('PMQ_ERR_ARGUMENT', 'name exactly one of --topic T, --group G');
  }
  if (opts.principal !== ACL_WILDCARD) checkUserName(opts.principal, 'principal');
  const resourceType = opts.topic !== undefined ? 'topic' : 'group';
  const name = checkResourceName(opts.topic ?? opts.group, resourceType);
  return { principal: opts.principal, resourceType, name, operations: opts.operation };
}

function entryCommand(command: Command): Command {
  return command.addOption(authFileOption())
    .requiredOption('--principal <user>', `a user, or ${ACL_WILDCARD} for every user`)
    .option('--topic <name>', `a topic, or ${ACL_WILDCARD} for all`)
    .option('--group <name>', `a consumer group, or ${ACL_WILDCARD} for all`)
    .requiredOption('--operation <ops>', `comma-separated: ${ACL_OPERATIONS.join(', ')}`,
      operationsArgument);
}

export function registerAclCommand(program: Command): void {
  const acl = program.command('acl')
    .description('manage what authenticated users may do (an auth file)');
  entryCommand(acl.command('add').description('allow operations'))
    .action((opts: AclOptions) => {
      const entry = entryOf(opts);
      writeAuthFile(opts.authFile, withAcl(readAuthFile(opts.authFile, true), entry));
      process.stderr.write(`pmq: ${entry.principal} may ${entry.operations.join(', ')} ` +
        `${entry.resourceType} ${entry.name}\n`);
    });
  entryCommand(acl.command('remove').description('take operations away'))
    .action((opts: AclOptions) => {
      writeAuthFile(opts.authFile, withoutAcl(readAuthFile(opts.authFile, false),
        entryOf(opts)));
      process.stderr.write('pmq: ACL removed\n');
    });
  acl.command('list').description('list ACLs').addOption(authFileOption())
    .option('--principal <user>', 'only this principal\'s')
    .option('--json', 'print JSON instead of a table', false)
    .action((opts: { authFile: string; principal?: string; json: boolean }) => {
      const acls = readAuthFile(opts.authFile, false).acls
        .filter((entry) => opts.principal === undefined || entry.principal === opts.principal);
      if (opts.json) {
        process.stdout.write(`${JSON.stringify(acls)}\n`);
        return;
      }
      process.stdout.write(formatTable(['PRINCIPAL', 'RESOURCE', 'NAME', 'OPERATIONS'],
        acls.map((entry) => [entry.principal, entry.resourceType, entry.name,
          entry.operations.join(',')])));
    });
}
