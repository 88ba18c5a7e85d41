#!/usr/bin/env node
// Turns a compiled BPF object into a C header with the bytes as an array, so the addon carries its
// program instead of looking for a file at run time (xxd -i is not always installed).
//   node native/bpf/embed.mjs IN.o OUT.h NAME     ->  static const unsigned char NAME[]; NAME_len
import fs from 'node:fs';

const [input, output, name] = process.argv.slice(2);
if (!input || !output || !/^[A-Za-z_][A-Za-z0-9_]*$/.test(name ?? '')) {
  console.error('usage: embed.mjs IN.o OUT.h C_IDENTIFIER');
  process.exit(2);
}
const bytes = fs.readFileSync(input);
const lines = [];
for (let i = 0; i < bytes.length; i += 16) {
  lines.push(`  ${Array.from(bytes.subarray(i, i + 16), (b) => `0x${b.toString(16).padStart(2, '0')},`).join(' ')}`);
}
const text = `/* Generated from ${input.split('/').pop()} by native/bpf/embed.mjs. Do not edit. */
#pragma once
/* 8-aligned: libelf reads the ELF structures in place. */
static const unsigned char ${name}[] __attribute__((aligned(8))) = {
${lines.join('\n')}
};
static const unsigned long ${name}_len = ${bytes.length}ul;
`;
// Write then rename: an interrupted build never leaves a truncated header behind.
fs.writeFileSync(`${output}.tmp`, text);
fs.renameSync(`${output}.tmp`, output);
