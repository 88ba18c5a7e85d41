// Generates common/wire.ts, the TypeScript side's copy of the wire constants, from
// native/include/slimfast_wire.h: every `#define SF_NAME <integer>` and every enum member
// `SF_NAME = <integer>`. The header stays the one source; test/wire-constants.test.ts fails when the
// generated file is not what this script makes of the header now.
//
//   node native/include/wire-ts.mjs            prints it
//   node native/include/wire-ts.mjs --write    writes common/wire.ts   (npm run gen:wire)
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
export const HEADER = path.join(here, 'slimfast_wire.h');
export const OUTPUT = path.join(here, '..', '..', 'common', 'wire.ts');

/** The integer constants of the header, in order: [name, literal as written (suffixes dropped)]. */
export function constantsOf(text) {
  const noComments = text.replace(/\/\*[\s\S]*?\*\//g, '').replace(/\/\/.*$/gm, '');
  const out = [];
  const seen = new Set();
  const add = (name, lit) => {
    if (seen.has(name)) throw new Error(`${name} is defined twice`);
    seen.add(name);
    out.push([name, lit.replace(/[uUlL]+$/, '')]);
  };
  for (const m of noComments.matchAll(/^#define\s+(SF_[A-Z0-9_]+)\s+(0x[0-9a-fA-F]+[uUlL]*|\d+[uUlL]*)\s*$/gm)) add(m[1], m[2]);
  for (const body of noComments.matchAll(/enum\s+\w+\s*\{([^}]*)\}/g)) {
    for (const m of body[1].matchAll(/(SF_[A-Z0-9_]+)\s*=\s*(0x[0-9a-fA-F]+|\d+)/g)) add(m[1], m[2]);
  }
  return out;
}

export function render(text) {
  const lines = [
    '// Generated from native/include/slimfast_wire.h by native/include/wire-ts.mjs (npm run gen:wire):',
    '// do not edit. The header is the one source of these values; test/wire-constants.test.ts checks',
    '// that this file is what the script makes of it.',
    '',
  ];
  for (const [name, lit] of constantsOf(text)) lines.push(`export const ${name} = ${lit};`);
  return `${lines.join('\n')}\n`;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const out = render(fs.readFileSync(HEADER, 'utf8'));
  if (process.argv.includes('--write')) fs.writeFileSync(OUTPUT, out);
  else process.stdout.write(out);
}
