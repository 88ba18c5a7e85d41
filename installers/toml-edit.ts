// Textual edits of TOML files (containerd's config.toml, CRI-O's drop-ins) that keep everything we do
// not touch byte for byte: comments, order, quoting, indentation. Only whole tables are removed or
// inserted. The writers check the result with a real TOML parser (smol-toml): the edited document must
// equal the original one plus exactly the intended change, or nothing is written.
import { isDeepStrictEqual } from 'node:util';
import { parse as parseToml } from 'smol-toml';
import { InstallError } from './file-change.js';

export interface TomlHeader {
  /** 0-based line of the header. */
  line: number;
  /** The table's key path, unquoted. */
  path: string[];
  /** [[array of tables]] */
  array: boolean;
  /** Whitespace before the '['. */
  indent: string;
}

export class TomlSyntaxError extends InstallError {}

/** Parses a header's key path between the brackets: bare, "basic" and 'literal' keys joined by dots. */
function parseKeyPath(src: string, lineNo: number): string[] {
  const keys: string[] = [];
  let i = 0;
  const fail = (why: string): never => {
    throw new TomlSyntaxError(`line ${lineNo + 1}: bad table header [${src}]: ${why}`);
  };
  for (;;) {
    while (src[i] === ' ' || src[i] === '\t') i++;
    if (src[i] === '"') {
      let key = '';
      i++;
      while (i < src.length && src[i] !== '"') {
        if (src[i] === '\\') {
          const e = src[i + 1];
          const map: Record<string, string> = { n: '\n', t: '\t', r: '\r', b: '\b', f: '\f', '"': '"', '\\': '\\' };
          if (e === 'u' || e === 'U') {
            const len = e === 'u' ? 4 : 8;
            key += String.fromCodePoint(parseInt(src.slice(i + 2, i + 2 + len), 16));
            i += 2 + len;
            continue;
          }
          if (!(e in map)) fail(`unknown escape \\${e}`);
          key += map[e];
          i += 2;
          continue;
        }
        key += src[i++];
      }
      if (src[i] !== '"') fail('unterminated string');
      i++;
      keys.push(key);
    } else if (src[i] === "'") {
      const end = src.indexOf("'", i + 1);
      if (end < 0) fail('unterminated string');
      keys.push(src.slice(i + 1, end));
      i = end + 1;
    } else {
      const m = /^[A-Za-z0-9_-]+/.exec(src.slice(i));
      if (!m) fail('expected a key');
      keys.push(m![0]);
      i += m![0].length;
    }
    while (src[i] === ' ' || src[i] === '\t') i++;
    if (i >= src.length) return keys;
    if (src[i] !== '.') fail(`unexpected "${src[i]}"`);
    i++;
  }
}

/**
 * Finds the table headers of a TOML document, skipping anything inside strings (also multi-line ones),
 * comments and multi-line arrays or inline tables, where a line may start with '[' too.
 */
export function scanHeaders(text: string): TomlHeader[] {
  const headers: TomlHeader[] = [];
  let i = 0;
  let line = 0;
  let depth = 0; // open [ and { of values
  let atLineStart = true;
  const n = text.length;
  while (i < n) {
    const c = text[i];
    if (c === '\n') {
      line++;
      i++;
      atLineStart = true;
      continue;
    }
    if (atLineStart && (c === ' ' || c === '\t' || c === '\r')) {
      i++;
      continue;
    }
    if (atLineStart && depth === 0 && c === '[') {
      const lineStart = text.lastIndexOf('\n', i - 1) + 1;
      const array = text[i + 1] === '[';
      const open = array ? 2 : 1;
      // Header keys may hold ']' only inside quotes.
      let j = i + open;
      let inQuote: string | null = null;
      while (j < n && text[j] !== '\n') {
        const d = text[j];
        if (inQuote) {
          if (d === '\\' && inQuote === '"') j++;
          else if (d === inQuote) inQuote = null;
        } else if (d === '"' || d === "'") inQuote = d;
        else if (d === ']') break;
        j++;
      }
      if (text[j] !== ']' || (array && text[j + 1] !== ']')) throw new TomlSyntaxError(`line ${line + 1}: unterminated table header`);
      headers.push({ line, path: parseKeyPath(text.slice(i + open, j), line), array, indent: text.slice(lineStart, i) });
      i = j + (array ? 2 : 1);
      atLineStart = false;
      // The rest of the line: whitespace and a comment.
      while (i < n && text[i] !== '\n') {
        if (text[i] === '#') {
          while (i < n && text[i] !== '\n') i++;
          break;
        }
        if (text[i] !== ' ' && text[i] !== '\t' && text[i] !== '\r') throw new TomlSyntaxError(`line ${line + 1}: text after a table header`);
        i++;
      }
      continue;
    }
    atLineStart = false;
    if (c === '#') {
      while (i < n && text[i] !== '\n') i++;
      continue;
    }
    if (c === '"' || c === "'") {
      const triple = text.startsWith(c.repeat(3), i);
      if (triple) {
        i += 3;
        for (;;) {
          if (i >= n) throw new TomlSyntaxError(`line ${line + 1}: unterminated multi-line string`);
          if (c === '"' && text[i] === '\\') {
            if (text[i + 1] === '\n') line++;
            i += 2;
            continue;
          }
          if (text.startsWith(c.repeat(3), i)) {
            i += 3;
            // Up to two more quotes may close it (""""" is allowed).
            while (text[i] === c) i++;
            break;
          }
          if (text[i] === '\n') line++;
          i++;
        }
      } else {
        i++;
        while (i < n && text[i] !== c && text[i] !== '\n') i += c === '"' && text[i] === '\\' ? 2 : 1;
        if (text[i] !== c) throw new TomlSyntaxError(`line ${line + 1}: unterminated string`);
        i++;
      }
      continue;
    }
    if (c === '[' || c === '{') depth++;
    else if (c === ']' || c === '}') depth = Math.max(0, depth - 1);
    i++;
  }
  return headers;
}

export function samePath(a: string[], b: string[]): boolean {
  return a.length === b.length && a.every((k, i) => k === b[i]);
}

export function startsWithPath(path: string[], prefix: string[]): boolean {
  return path.length >= prefix.length && prefix.every((k, i) => k === path[i]);
}

/** Formats a key: bare when it can be, else quoted with the given quote. */
export function formatKey(key: string, quote: '"' | "'" = '"'): string {
  if (/^[A-Za-z0-9_-]+$/.test(key)) return key;
  if (quote === "'" && !key.includes("'") && !/[\n\r]/.test(key)) return `'${key}'`;
  return JSON.stringify(key);
}

export function formatValue(v: string | boolean | number): string {
  return typeof v === 'string' ? JSON.stringify(v) : String(v);
}

/** Lines of the table starting at headers[k]: up to the next header, less the blank/comment lines above it. */
function blockEnd(lines: string[], headers: TomlHeader[], k: number): number {
  let end = k + 1 < headers.length ? headers[k + 1].line : lines.length;
  if (k + 1 < headers.length) {
    while (end > headers[k].line + 1 && /^\s*(#.*)?$/.test(lines[end - 1])) end--;
  } else {
    while (end > headers[k].line + 1 && /^\s*$/.test(lines[end - 1])) end--;
  }
  return end;
}

/**
 * Removes every table (and array-of-tables entry) whose path starts with prefix, together with one blank
 * line before it. Returns the new text.
 */
export function removeTables(text: string, prefix: string[]): string {
  const lines = text.split('\n');
  const headers = scanHeaders(text);
  const drop = new Set<number>();
  headers.forEach((h, k) => {
    if (!startsWithPath(h.path, prefix)) return;
    const end = blockEnd(lines, headers, k);
    for (let l = h.line; l < end; l++) drop.add(l);
    if (h.line > 0 && /^\s*$/.test(lines[h.line - 1]) && !drop.has(h.line - 1)) drop.add(h.line - 1);
  });
  return lines.filter((_, l) => !drop.has(l)).join('\n');
}

/**
 * Inserts block (lines, no trailing newline) after the last table whose path starts with afterPrefix,
 * or at the end of the document. A blank line separates it from what precedes it.
 */
export function insertBlock(text: string, block: string, afterPrefix?: string[]): string {
  const lines = text.split('\n');
  const headers = scanHeaders(text);
  let at = -1;
  if (afterPrefix) {
    headers.forEach((h, k) => {
      if (startsWithPath(h.path, afterPrefix)) at = blockEnd(lines, headers, k);
    });
  }
  if (at < 0) {
    // End of document: drop trailing blank lines, append, end with one newline.
    while (lines.length > 0 && lines[lines.length - 1].trim() === '') lines.pop();
    const head = lines.length ? `${lines.join('\n')}\n\n` : '';
    return `${head}${block}\n`;
  }
  const before = lines.slice(0, at);
  const after = lines.slice(at);
  return [...before, '', ...block.split('\n'), ...after].join('\n');
}

/** Indentation of the first header whose path starts with prefix ('' when none). */
export function indentOf(text: string, prefix: string[]): string | undefined {
  return scanHeaders(text).find((h) => startsWithPath(h.path, prefix))?.indent;
}

/** smol-toml gives null-prototype objects; plain ones compare with isDeepStrictEqual like literals do. */
function toPlain(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(toPlain);
  if (v instanceof Date) {
    try {
      return `date:${v.toISOString()}`; // smol-toml's TomlDate gives its TOML text (also for local dates/times)
    } catch {
      return `date:${String(v)}`;
    }
  }
  if (typeof v === 'object' && v !== null) {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) out[k] = toPlain(x);
    return out;
  }
  return v;
}

export function parseTomlDoc(text: string, file: string): Record<string, unknown> {
  try {
    return toPlain(parseToml(text)) as Record<string, unknown>;
  } catch (err) {
    throw new InstallError(`${file} is not valid TOML: ${(err as Error).message.split('\n')[0]}; fix it first (it was left unchanged)`);
  }
}

export function getPath(doc: unknown, path: string[]): unknown {
  let cur: unknown = doc;
  for (const k of path) {
    if (typeof cur !== 'object' || cur === null || Array.isArray(cur)) return undefined;
    cur = (cur as Record<string, unknown>)[k];
  }
  return cur;
}

/**
 * A deep copy of doc without the value at path, and without the tables on the way to it that are left
 * empty (a header like [a.b.c] creates a and a.b implicitly).
 */
export function withoutPath(doc: unknown, path: string[]): unknown {
  const copy = structuredClone(doc) as Record<string, unknown>;
  const chain: Record<string, unknown>[] = [copy];
  for (const k of path.slice(0, -1)) {
    const next: unknown = chain[chain.length - 1][k];
    if (typeof next !== 'object' || next === null || Array.isArray(next)) return copy;
    chain.push(next as Record<string, unknown>);
  }
  delete chain[chain.length - 1][path[path.length - 1]];
  for (let d = chain.length - 1; d > 0; d--) {
    if (Object.keys(chain[d]).length > 0) break;
    delete chain[d - 1][path[d - 1]];
  }
  return copy;
}

/**
 * Checks a textual edit: the edited document must parse, hold `expected` at `path`, and otherwise equal
 * the original. Guards every write against an edit that would change more than intended.
 */
export function verifyEdit(beforeText: string, afterText: string, file: string, path: string[], expected: unknown): void {
  const before = beforeText.trim() === '' ? {} : parseTomlDoc(beforeText, file);
  let after: Record<string, unknown>;
  try {
    after = toPlain(parseToml(afterText)) as Record<string, unknown>;
  } catch (err) {
    throw new InstallError(
      `editing ${file} would make it invalid TOML (${(err as Error).message.split('\n')[0]}); it was left unchanged — add the table by hand`,
    );
  }
  if (!isDeepStrictEqual(getPath(after, path), expected)) {
    throw new InstallError(`editing ${file} did not give the expected ${path.join('.')} table; it was left unchanged — add the table by hand`);
  }
  if (!isDeepStrictEqual(withoutPath(before, path), withoutPath(after, path))) {
    throw new InstallError(`editing ${file} would change more than ${path.join('.')}; it was left unchanged — add the table by hand`);
  }
}
