// The error-code catalogue (common/error-codes.ts) is the one list of pmq's codes:
// docs/error-codes.md documents exactly its codes (none missing, none extra), every PMQ_ERR_…
// spelled anywhere in the source tree (but node_modules, dist, build and test) is one of them,
// PmqError takes its default `retriable` from it, and a code outside it aborts (an invariant).
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';

import t from 'tap';

import { ERROR_CODES, isErrorCode } from '../../common/error-codes.js';
import { PmqError } from '../../common/errors.js';
import { peerError } from '../../rpc/control-channel.js';

const ROOT = new URL('../..', import.meta.url).pathname;
const SKIPPED = new Set(['node_modules', 'dist', 'build', 'test', '.git', '.tap']);
const CODES = new Set(Object.keys(ERROR_CODES));
/** A code; followed by `*` (`PMQ_ERR_REGION_*`), a family of codes. */
const TOKEN = /PMQ_ERR_[A-Z_]+/g;

interface Mention { token: string; family: boolean; where: string }

function mentions(text: string, file: string): Mention[] {
  return text.split('\n').flatMap((line, index) => [...line.matchAll(TOKEN)].map((match) => ({
    token: match[0], family: line[match.index + match[0].length] === '*',
    where: `${file}:${index + 1}` })));
}

/** Known: a catalogue code, or a family (PMQ_ERR_X_*) that names at least one. */
function known(mention: Mention): boolean {
  if (!mention.family) return CODES.has(mention.token);
  return mention.token.endsWith('_') && [...CODES].some((code) => code.startsWith(mention.token));
}

/** Every file of the tree but the skipped directories' and binary ones. */
function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    if (SKIPPED.has(name)) return [];
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return sourceFiles(path);
    return readFileSync(path).includes(0) ? [] : [path];
  });
}

t.test('the catalogue: PMQ_ERR_ words, each retriable or not, with a one-line meaning',
  async (t) => {
    for (const [code, info] of Object.entries(ERROR_CODES)) {
      t.match(code, /^PMQ_ERR_[A-Z]+(_[A-Z]+)*$/, code);
      t.equal(typeof info.retriable, 'boolean', `${code} retriable`);
      t.ok(info.meaning.length > 0 && info.meaning.length <= 100 && !info.meaning.includes('\n'),
        `${code}: one line`);
    }
    t.ok(isErrorCode('PMQ_ERR_DENIED'));
    t.notOk(isErrorCode('PMQ_ERR_NO_SUCH_CODE'));
    t.notOk(isErrorCode('toString'), 'only the catalogue\'s own keys');
    t.notOk(isErrorCode(7));
  });

t.test('docs/error-codes.md documents exactly the catalogue', async (t) => {
  const doc = readFileSync(join(ROOT, 'docs/error-codes.md'), 'utf8');
  // Documented: a code in the first cell of a table row.
  const documented = new Set(doc.split('\n').filter((line) => line.startsWith('| '))
    .flatMap((line) => line.split('|')[1]!.match(TOKEN) ?? []));
  t.same([...CODES].filter((code) => !documented.has(code)), [], 'none missing');
  t.same([...documented].filter((code) => !CODES.has(code)), [], 'none extra');
  const unknown = mentions(doc, 'docs/error-codes.md').filter((m) => !known(m));
  t.same(unknown, [], 'every mention elsewhere in it is a code or a family of codes');
});

t.test('every PMQ_ERR_ spelled in the source tree is in the catalogue', async (t) => {
  const files = sourceFiles(ROOT);
  const all = files.flatMap((path) => mentions(readFileSync(path, 'utf8'),
    relative(ROOT, path)));
  t.ok(files.length > 100 && files.some((path) => path.endsWith('.cc')),
    `${files.length} files scanned, native ones too`);
  t.ok(all.some((m) => m.token === 'PMQ_ERR_GRANT_REVOKED' && m.where.startsWith('native/')),
    'the scan finds codes in C++');
  t.same(all.filter((m) => !known(m)).map((m) => `${m.where}: ${m.token}${m.family ? '*' : ''}`),
    [], 'codes (or families) outside the catalogue');
});

t.test('PmqError: the catalogue gives the default retriable; a caller may say otherwise',
  async (t) => {
    t.equal(new PmqError('PMQ_ERR_TIMEOUT', 'slow').retriable, true);
    t.equal(new PmqError('PMQ_ERR_ARGUMENT', 'bad').retriable, false);
    t.equal(new PmqError('PMQ_ERR_TIMEOUT', 'slow', { retriable: false }).retriable, false);
    t.equal(new PmqError('PMQ_ERR_METADATA_IO', 'write', { retriable: true }).retriable, true);
  });

t.test('a peer\'s error reply with a code outside the catalogue is PMQ_ERR_PROTOCOL',
  async (t) => {
    t.match(peerError('PMQ_ERR_BUSY', 'full', true), { code: 'PMQ_ERR_BUSY', retriable: true });
    t.match(peerError('PMQ_ERR_FROM_THE_FUTURE', 'what', false), { code: 'PMQ_ERR_PROTOCOL',
      message: /unknown error code "PMQ_ERR_FROM_THE_FUTURE": what/, retriable: false });
  });

t.test('a code outside the catalogue from an untyped caller aborts the process', async (t) => {
  const script = "import { PmqError } from './common/errors.ts';" +
    "new PmqError(String('PMQ_ERR_NOT_IN_THE_CATALOGUE'), 'x');";
  const run = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e',
    script], { cwd: ROOT, encoding: 'utf8', timeout: 30_000 });
  t.equal(run.signal, 'SIGABRT', 'invariant() aborted');
  t.match(run.stderr, /error codes come from common\/error-codes\.ts/);
});
