// Which folder may import which. broker/ holds the broker alone: hooks/, runtime-wrapper/,
// installers/, runtime-service/ and common/ import nothing from it, and of cli/ only the `daemon`
// command (which starts the broker) and `doctor` (which runs the broker's addon probes and reads etcd
// under its key names) do, and only the modules listed in CLI_INTO_BROKER. common/ imports nothing of
// the project's outside common/. Read from the import lines of every .ts file there, tests included.
import fs from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { repoRoot } from '../common/paths.js';

const ROOT = repoRoot();

/** The folders that must not import broker/. */
const CHECKED = ['hooks', 'runtime-wrapper', 'installers', 'runtime-service', 'common', 'cli'];

/** The only imports of broker/ from cli/: file -> the broker modules it may import. */
const CLI_INTO_BROKER: Record<string, string[]> = {
  'cli/daemon.ts': ['broker/daemon.ts', 'broker/log.ts', 'broker/metrics.ts'],
  'cli/doctor.ts': ['broker/etcd-membership.ts', 'broker/native-engine.ts'],
};

/** The module specifiers a TypeScript source imports: import/export … from, side-effect imports and import(). */
function importSpecifiers(source: string): string[] {
  const out: string[] = [];
  const patterns = [
    /^\s*(?:import|export)\b[^;'"]*?\bfrom\s*['"]([^'"]+)['"]/gm,
    /^\s*import\s*['"]([^'"]+)['"]/gm,
    /\bimport\s*\(\s*['"]([^'"]+)['"]\s*\)/g,
  ];
  for (const re of patterns) for (const m of source.matchAll(re)) out.push(m[1]);
  return out;
}

/** The repository files a source imports by relative path, as repository paths of their .ts sources. */
function localImports(file: string): string[] {
  const text = fs.readFileSync(path.join(ROOT, file), 'utf8');
  return importSpecifiers(text)
    .filter((s) => s.startsWith('./') || s.startsWith('../'))
    .map((s) => path.relative(ROOT, path.resolve(ROOT, path.dirname(file), s)).replace(/\.js$/, '.ts'));
}

function sources(dir: string): string[] {
  const out: string[] = [];
  for (const e of fs.readdirSync(path.join(ROOT, dir), { withFileTypes: true })) {
    const rel = `${dir}/${e.name}`;
    if (e.isDirectory()) out.push(...sources(rel));
    else if (e.name.endsWith('.ts') && !e.name.endsWith('.d.ts')) out.push(rel);
  }
  return out.sort();
}

const top = (p: string) => p.split('/')[0];

/** What a file imports that it must not, as "file -> import". */
function violations(files: string[], importsOf: (f: string) => string[]): string[] {
  const bad: string[] = [];
  for (const f of files) {
    for (const imp of importsOf(f)) {
      const where = top(imp);
      const wrong = (where === 'broker' && !(CLI_INTO_BROKER[f] ?? []).includes(imp)) || (top(f) === 'common' && where !== 'common');
      if (wrong) bad.push(`${f} -> ${imp}`);
    }
  }
  return bad;
}

test('the import lines are read: named, default, type-only, multi-line, re-exports, side effects, dynamic', (t) => {
  const source = [
    "import fs from 'node:fs';",
    "import { a, type B } from '../broker/a.js';",
    'import type { C } from "../broker/c.js";',
    "import {\n  d,\n  e,\n} from '../broker/d.js';",
    "export { f } from './f.js';",
    "export * from '../common/g.js';",
    "import '../broker/side.js';",
    "const { h } = await import('../broker/h.js');",
    "const s = 'from here'; // from '../broker/not-an-import.js' is a comment",
  ].join('\n');
  t.deepEqual(
    importSpecifiers(source).sort(),
    ['../broker/a.js', '../broker/c.js', '../broker/d.js', '../broker/h.js', '../broker/side.js', '../common/g.js', './f.js', 'node:fs'].sort(),
  );
});

test('the check reports an import of broker/, one from cli/ past its list, and one out of common/', (t) => {
  const imports: Record<string, string[]> = {
    'hooks/x.ts': ['common/paths.ts', 'broker/registry.ts'],
    'cli/daemon.ts': ['broker/daemon.ts', 'broker/registry.ts'],
    'cli/doctor.ts': ['broker/native-engine.ts'],
    'common/y.ts': ['common/paths.ts', 'runtime-wrapper/spec.ts'],
    'installers/z.ts': ['runtime-wrapper/spec.ts', 'common/cidr.ts'],
  };
  t.deepEqual(
    violations(Object.keys(imports), (f) => imports[f]),
    ['hooks/x.ts -> broker/registry.ts', 'cli/daemon.ts -> broker/registry.ts', 'common/y.ts -> runtime-wrapper/spec.ts'],
  );
});

test('hooks/, runtime-wrapper/, installers/, runtime-service/ and common/ import nothing from broker/; cli/ only what it lists', (t) => {
  const files = CHECKED.flatMap((d) => sources(d));
  for (const d of CHECKED)
    t.true(
      files.some((f) => top(f) === d),
      `${d}/ has sources`,
    );
  t.deepEqual(violations(files, localImports), []);
  // The list names what is imported: a module no longer needed leaves it.
  for (const [file, allowed] of Object.entries(CLI_INTO_BROKER)) {
    t.deepEqual(
      localImports(file)
        .filter((i) => top(i) === 'broker')
        .sort(),
      [...allowed].sort(),
      file,
    );
  }
});
