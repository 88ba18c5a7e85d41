// README.md against the tree it describes: its "Where each part lives" table names exactly what `ls`
// shows at the top level (less dot-files and what .gitignore keeps out: node_modules, dist, build,
// release), it links every page in docs/, it stays at most 200 lines, and the relative links of the
// README and of docs/ lead to files and headings that exist. docs/architecture.md's folder table
// names only folders that exist, and every top-level folder and every folder under native/.
import fs from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { repoRoot } from '../common/paths.js';

const ROOT = repoRoot();
const README = path.join(ROOT, 'README.md');
const DOCS = path.join(ROOT, 'docs');
const MAX_LINES = 200;

/** The top-level .gitignore's patterns that name top-level entries (`dist/`, `*.log`), as regexps. */
function ignoredAtTop(gitignore: string): RegExp[] {
  return gitignore
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#') && !l.startsWith('!') && !l.replace(/\/$/, '').includes('/'))
    .map(
      (l) =>
        new RegExp(
          `^${l
            .replace(/\/$/, '')
            .replace(/[.+^${}()|[\]\\]/g, '\\$&')
            .replace(/\*/g, '[^/]*')
            .replace(/\?/g, '[^/]')}$`,
        ),
    );
}

/** `ls` of dir: every entry but dot-files and build output. */
function topLevel(dir: string): string[] {
  const gi = path.join(dir, '.gitignore');
  const ignored = fs.existsSync(gi) ? ignoredAtTop(fs.readFileSync(gi, 'utf8')) : [];
  return fs
    .readdirSync(dir)
    .filter((n) => !n.startsWith('.') && !ignored.some((re) => re.test(n)))
    .sort();
}

/** The rows of the first table under the heading `title`: their cells, header and separator left out. */
function tableUnder(markdown: string, title: string): string[][] {
  const lines = markdown.split('\n');
  const at = lines.findIndex((l) => /^#+ /.test(l) && l.replace(/^#+ /, '').trim() === title);
  if (at < 0) throw new Error(`no heading "${title}"`);
  const rows: string[][] = [];
  for (const l of lines.slice(at + 1)) {
    if (/^#+ /.test(l)) break;
    if (l.startsWith('|'))
      rows.push(
        l
          .replace(/^\|/, '')
          .replace(/\|$/, '')
          .split('|')
          .map((c) => c.trim()),
      );
    else if (rows.length > 0) break;
  }
  return rows.slice(2);
}

/** The names in backticks in a table cell, without a trailing slash: "`cli/`, `bin/`" -> cli, bin. */
function codeNames(cell: string): string[] {
  return [...cell.matchAll(/`([^`]+)`/g)].map((m) => m[1].replace(/\/$/, ''));
}

/** What the README's table misses of `ls`, and what it names that `ls` does not show. */
function compareWithLs(readme: string, ls: string[]): { missing: string[]; extra: string[]; twice: string[] } {
  const named = tableUnder(readme, 'Where each part lives').flatMap((r) => codeNames(r[0]));
  return {
    missing: ls.filter((n) => !named.includes(n)),
    extra: named.filter((n) => !ls.includes(n)),
    twice: named.filter((n, i) => named.indexOf(n) !== i),
  };
}

/** A heading's anchor as GitHub makes it (lower case, punctuation dropped, spaces to hyphens). */
function slug(heading: string): string {
  return heading
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\s_-]/gu, '')
    .replace(/\s/g, '-');
}

function anchors(markdown: string): Set<string> {
  const seen = new Map<string, number>();
  const out = new Set<string>();
  let fence = false;
  for (const l of markdown.split('\n')) {
    if (l.startsWith('```')) fence = !fence;
    if (fence || !/^#+ /.test(l)) continue;
    const base = slug(l.replace(/^#+ /, ''));
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    out.add(n === 0 ? base : `${base}-${n}`);
  }
  return out;
}

/** Relative links of a Markdown file (outside code) that lead to no file, or to no heading there. */
function brokenLinks(file: string): string[] {
  const text = fs.readFileSync(file, 'utf8').replace(/```[\s\S]*?```/g, '');
  const bad: string[] = [];
  for (const m of text.matchAll(/\]\(([^)\s]+)\)/g)) {
    const target = m[1];
    if (/^[a-z]+:/.test(target)) continue;
    const [rel, anchor] = target.split('#');
    const to = rel === '' ? file : path.resolve(path.dirname(file), rel);
    if (!fs.existsSync(to)) {
      bad.push(`${target}: no such file`);
      continue;
    }
    if (anchor !== undefined && to.endsWith('.md') && !anchors(fs.readFileSync(to, 'utf8')).has(anchor)) bad.push(`${target}: no such heading`);
  }
  return bad;
}

const readme = fs.readFileSync(README, 'utf8');
const docPages = fs
  .readdirSync(DOCS)
  .filter((n) => n.endsWith('.md'))
  .sort();

test('the README is at most 200 lines', (t) => {
  const lines = readme.split('\n').length - (readme.endsWith('\n') ? 1 : 0);
  t.true(lines <= MAX_LINES, `README.md has ${lines} lines`);
});

test('"Where each part lives" names exactly the top-level entries, one row each', (t) => {
  const ls = topLevel(ROOT);
  t.true(ls.includes('README.md') && ls.includes('docs') && !ls.includes('node_modules') && !ls.includes('dist'), ls.join(' '));
  t.deepEqual(compareWithLs(readme, ls), { missing: [], extra: [], twice: [] });
  for (const row of tableUnder(readme, 'Where each part lives')) {
    t.is(codeNames(row[0]).length, 1, `one entry per row: ${row[0]}`);
    t.true((row[1] ?? '').length > 0, `${row[0]} says what it is`);
  }
});

test('the comparison reports an entry the table misses, one it names that is not there, and one named twice', (t) => {
  const table =
    '## Where each part lives\n\n| entry | what |\n|---|---|\n| `a/` | x |\n| `b.json` | y |\n| `b.json` | z |\n\n## Next\n\n| `c/` | not this table |\n';
  t.deepEqual(compareWithLs(table, ['a', 'd']), { missing: ['d'], extra: ['b.json', 'b.json'], twice: ['b.json'] });
  t.true(ignoredAtTop('dist/\n*.log\n').some((re) => re.test('npm-debug.log')));
  t.false(
    ignoredAtTop('native/preload/*.so\n').some((re) => re.test('x.so')),
    'patterns below the top level are not top-level names',
  );
});

test('every page in docs/ is linked from the README', (t) => {
  t.true(docPages.length > 0);
  for (const page of docPages) t.true(readme.includes(`](docs/${page})`) || readme.includes(`](docs/${page}#`), `docs/${page} is linked`);
});

test('relative links in the README and in docs/ lead to files and headings that exist', (t) => {
  for (const file of [README, ...docPages.map((p) => path.join(DOCS, p))]) {
    t.deepEqual(brokenLinks(file), [], path.relative(ROOT, file));
  }
});

test('docs/architecture.md names existing folders, every top-level folder and every folder of native/', (t) => {
  const arch = fs.readFileSync(path.join(DOCS, 'architecture.md'), 'utf8');
  const named = tableUnder(arch, 'Folders').flatMap((r) => codeNames(r[0]));
  for (const n of named) t.true(fs.existsSync(path.join(ROOT, n)), `${n} exists`);
  const isDir = (p: string) => fs.statSync(path.join(ROOT, p)).isDirectory();
  const folders = [
    ...topLevel(ROOT).filter(isDir),
    ...fs
      .readdirSync(path.join(ROOT, 'native'))
      .map((n) => `native/${n}`)
      .filter(isDir),
  ];
  for (const f of folders)
    t.true(
      named.some((n) => n === f || n.startsWith(`${f}/`)),
      `${f} is in the table`,
    );
});
