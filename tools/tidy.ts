/**
 * House-style checks that a compiler does not make (the TigerBeetle tidy idea): line length,
 * function length in TypeScript sources, banned patterns. Run in CI by `npm test`.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';

const ROOT = new URL('..', import.meta.url).pathname;
const SOURCE_DIRS = ['native', 'common', 'storage-node', 'broker-node', 'clients', 'cli', 'bench',
  'test', 'tools'];
const LINE_COLUMNS_MAX = 100;
const FUNCTION_LINES_MAX = 70;

interface Problem { file: string; line: number; what: string }

function listFiles(dir: string): string[] {
  let entries: string[];
  try { entries = readdirSync(dir); } catch { return []; }
  return entries.flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return listFiles(path);
    return /\.(ts|cc|h)$/.test(name) ? [path] : [];
  });
}

const BANNED: { pattern: RegExp; what: string; appliesTo: (file: string) => boolean }[] = [
  { pattern: /console\.log\(/, what: 'console.log in source (use the logger or process.stdout)',
    appliesTo: (f) => !f.startsWith('test/') && !f.startsWith('tools/') && !f.startsWith('bench/') },
  { pattern: /:\s*any\b|as any\b|<any>/, what: '`any` type', appliesTo: (f) => f.endsWith('.ts') },
  { pattern: /Buffer\.concat\(/, what: 'Buffer.concat (copies; not on hot paths)',
    appliesTo: (f) => /^(native|storage-node|broker-node|clients|common)\//.test(f) },
  { pattern: /\bTODO\b(?!\(#\d+\))/, what: 'TODO without an issue number: TODO(#N)',
    appliesTo: () => true },
];

function checkFunctionLengths(file: string, lines: string[], problems: Problem[]): void {
  // Top-level and method functions: a line opening a function body at indentation d, closed by
  // the first later line that is just "}" at the same indentation.
  const opener = /^(\s*)(export\s+)?(async\s+)?(function\b|[\w$]+\s*\(.*\)\s*(:\s*[^=]+)?\{$)/;
  lines.forEach((text, index) => {
    const match = opener.exec(text);
    if (match === null || !text.trimEnd().endsWith('{')) return;
    if (/^\s*(if|for|while|switch|catch|else)\b/.test(text)) return;
    const indent = match[1] ?? '';
    for (let end = index + 1; end < lines.length; end += 1) {
      if (lines[end] === `${indent}}` || lines[end]?.startsWith(`${indent}}`) === true &&
          (lines[end]?.length ?? 0) <= indent.length + 2) {
        const length = end - index - 1;
        if (length > FUNCTION_LINES_MAX) {
          problems.push({ file, line: index + 1,
            what: `function body of ${length} lines (max ${FUNCTION_LINES_MAX})` });
        }
        return;
      }
    }
  });
}

function checkFile(path: string, problems: Problem[]): void {
  const file = relative(ROOT, path);
  const lines = readFileSync(path, 'utf8').split('\n');
  lines.forEach((text, index) => {
    if (text.length > LINE_COLUMNS_MAX) {
      problems.push({ file, line: index + 1, what: `line of ${text.length} columns` });
    }
    for (const rule of BANNED) {
      if (rule.appliesTo(file) && rule.pattern.test(text) && !text.includes('tidy: allow')) {
        problems.push({ file, line: index + 1, what: rule.what });
      }
    }
  });
  if (file.endsWith('.ts') && !file.startsWith('test/')) checkFunctionLengths(file, lines, problems);
}

const problems: Problem[] = [];
for (const dir of SOURCE_DIRS) {
  for (const path of listFiles(join(ROOT, dir))) {
    if (path !== new URL(import.meta.url).pathname) checkFile(path, problems);
  }
}
for (const p of problems) process.stderr.write(`${p.file}:${p.line}: ${p.what}\n`);
if (problems.length > 0) {
  process.stderr.write(`tidy: ${problems.length} problem(s)\n`);
  process.exit(1);
}
process.stdout.write('tidy: ok\n');
