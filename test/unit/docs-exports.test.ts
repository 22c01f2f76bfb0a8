// The client guide names only what the package exports (issue 13, bug 10): docs/clients.md's
// "package entry" table lists exactly the values `import … from 'pmq'` gives (clients/index.ts,
// package.json `exports['.']`), every error class the guide names anywhere is one of them, and
// README and clients.md point only to files the package ships (no DESIGN.md, which lives
// outside the repository).
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

import t from 'tap';

import * as entry from '../../clients/index.js';

const ROOT = new URL('../..', import.meta.url).pathname;
const GUIDE = readFileSync(join(ROOT, 'docs/clients.md'), 'utf8');
const README = readFileSync(join(ROOT, 'README.md'), 'utf8');

/** The backticked names in the first column of the "package entry" section's table. */
function documentedExports(): string[] {
  const start = GUIDE.indexOf('## The package entry');
  const end = GUIDE.indexOf('\n## ', start + 1);
  const section = GUIDE.slice(start, end);
  const rows = section.split('\n').filter((line) => line.startsWith('| `'));
  return rows.flatMap((row) => [...row.split('|')[1]!.matchAll(/`([A-Za-z]+)`/g)]
    .map((match) => match[1]!));
}

t.test('the package entry table lists exactly the exported values', async (t) => {
  const documented = documentedExports();
  t.ok(documented.length > 10, 'the table was found');
  t.same([...documented].sort(), Object.keys(entry).sort());
});

t.test('every error class and function docs/clients.md names is exported', async (t) => {
  const exported = new Set(Object.keys(entry));
  const names = new Set([...GUIDE.matchAll(/`([A-Z][A-Za-z]*Error)`/g)].map((m) => m[1]!));
  for (const match of GUIDE.matchAll(/`(partitionForKey|connect|toClientError)\(/g)) {
    names.add(match[1]!);
  }
  t.ok(names.size > 10, 'the guide names error classes');
  for (const name of names) t.ok(exported.has(name), `${name} is exported from 'pmq'`);
});

t.test('README and clients.md point only to files of the repository', async (t) => {
  for (const [file, text] of [['README.md', README], ['docs/clients.md', GUIDE]] as const) {
    t.notMatch(text, /DESIGN\.md/, `${file} does not point to DESIGN.md`);
    const paths = new Set([...text.matchAll(/\b((?:docs\/)?[A-Za-z-]+\.md)\b/g)]
      .map((m) => m[1]!));
    for (const path of paths) {
      const resolved = path.includes('/') || path === 'README.md' || path === 'ARCHITECTURE.md'
        ? path : `docs/${path}`;
      t.ok(existsSync(join(ROOT, resolved)), `${file} names ${path}, which exists`);
    }
  }
});
