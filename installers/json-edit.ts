// Edits a JSON document's text in place: setting one member changes only the bytes of that member (or
// inserts it after its new siblings), so what the installer does not touch keeps its formatting byte
// for byte (compact arrays, hand layout, key order, odd spacing). The new text is written
// in the style of its surroundings: one member per line with their indentation, or inline when the
// object is written on one line.

interface Span {
  start: number;
  end: number;
}

interface Member {
  key: string;
  keyStart: number;
  value: Node;
}

interface Node extends Span {
  /** Present for objects, in text order. */
  members?: Member[];
}

/** A parser that only records where things are; callers validate the document with JSON.parse first. */
class Scanner {
  private i = 0;
  constructor(private readonly text: string) {}

  root(): Node {
    this.ws();
    const n = this.value();
    this.ws();
    if (this.i !== this.text.length) throw new Error(`unexpected text at offset ${this.i}`);
    return n;
  }

  private ws(): void {
    while (this.i < this.text.length && ' \t\r\n'.includes(this.text[this.i])) this.i++;
  }

  private expect(c: string): void {
    if (this.text[this.i] !== c) throw new Error(`expected "${c}" at offset ${this.i}`);
    this.i++;
  }

  private value(): Node {
    const start = this.i;
    const c = this.text[this.i];
    if (c === '{') return this.object();
    if (c === '[') {
      this.i++;
      this.ws();
      if (this.text[this.i] !== ']') {
        for (;;) {
          this.value();
          this.ws();
          if (this.text[this.i] !== ',') break;
          this.i++;
          this.ws();
        }
      }
      this.expect(']');
      return { start, end: this.i };
    }
    if (c === '"') {
      this.string();
      return { start, end: this.i };
    }
    const m = /^(?:-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?|true|false|null)/.exec(this.text.slice(this.i, this.i + 400));
    if (!m) throw new Error(`unexpected character at offset ${this.i}`);
    this.i += m[0].length;
    return { start, end: this.i };
  }

  private string(): string {
    const start = this.i;
    this.expect('"');
    while (this.i < this.text.length && this.text[this.i] !== '"') this.i += this.text[this.i] === '\\' ? 2 : 1;
    this.expect('"');
    return JSON.parse(this.text.slice(start, this.i)) as string;
  }

  private object(): Node {
    const start = this.i;
    this.expect('{');
    const members: Member[] = [];
    this.ws();
    if (this.text[this.i] !== '}') {
      for (;;) {
        this.ws();
        const keyStart = this.i;
        const key = this.string();
        this.ws();
        this.expect(':');
        this.ws();
        members.push({ key, keyStart, value: this.value() });
        this.ws();
        if (this.text[this.i] !== ',') break;
        this.i++;
      }
    }
    this.expect('}');
    return { start, end: this.i, members };
  }
}

/** The whitespace a line starts with, for the line holding offset. */
function lineIndent(text: string, offset: number): string {
  const lineStart = text.lastIndexOf('\n', offset - 1) + 1;
  return /^[ \t]*/.exec(text.slice(lineStart))![0];
}

/** One-line JSON with a space after ":" and ",", as people write it inline. */
function inline(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(inline).join(', ')}]`;
  if (v !== null && typeof v === 'object')
    return `{${Object.entries(v)
      .map(([k, x]) => `${JSON.stringify(k)}: ${inline(x)}`)
      .join(', ')}}`;
  return JSON.stringify(v);
}

/** The file's line ending: CRLF when it has one, so that new lines match the old. */
function newline(text: string): string {
  return text.includes('\r\n') ? '\r\n' : '\n';
}

/** v written at `indent` (the indentation of the line it starts on), nested levels one `unit` deeper each. */
function render(v: unknown, indent: string, unit: string, nl = '\n'): string {
  if (unit === '') return inline(v);
  return JSON.stringify(v, null, unit).replace(/\n/g, `${nl}${indent}`);
}

function splice(text: string, span: Span, insert: string): string {
  return text.slice(0, span.start) + insert + text.slice(span.end);
}

/**
 * Sets the member at path (object keys from the root) to value, creating the objects on the way that
 * are missing. Every object on the way that exists must be an object (the caller checks). `unit` is the
 * document's indentation step ('' for compact).
 */
export function setMember(text: string, path: string[], value: unknown, unit: string): string {
  let node = new Scanner(text).root();
  for (let depth = 0; depth < path.length; depth++) {
    if (!node.members) throw new Error(`"${path.slice(0, depth).join('.')}" is not an object`);
    const key = path[depth];
    // JSON.parse keeps the last of duplicate keys: so does this.
    const found = [...node.members].reverse().find((m) => m.key === key);
    if (!found) {
      // The rest of the path becomes one new member holding nested objects.
      let v: unknown = value;
      for (let k = path.length - 1; k > depth; k--) v = { [path[k]]: v };
      return insertMember(text, node, key, v, unit);
    }
    if (depth === path.length - 1) return splice(text, found.value, render(value, lineIndent(text, found.keyStart), unit, newline(text)));
    node = found.value;
  }
  throw new Error('setMember: empty path');
}

function insertMember(text: string, obj: Node, key: string, value: unknown, unit: string): string {
  const members = obj.members!;
  const nl = newline(text);
  if (members.length > 0) {
    const last = members[members.length - 1];
    const multiLine = text.slice(obj.start, members[0].keyStart).includes('\n');
    if (!multiLine) return splice(text, { start: last.value.end, end: last.value.end }, `, ${JSON.stringify(key)}: ${inline(value)}`);
    const indent = lineIndent(text, last.keyStart);
    return splice(
      text,
      { start: last.value.end, end: last.value.end },
      `,${nl}${indent}${JSON.stringify(key)}: ${render(value, indent, unit || '  ', nl)}`,
    );
  }
  if (unit === '') {
    return splice(text, obj, `{${JSON.stringify(key)}: ${inline(value)}}`);
  }
  const closing = lineIndent(text, obj.start);
  const indent = closing + unit;
  return splice(text, obj, `{${nl}${indent}${JSON.stringify(key)}: ${render(value, indent, unit, nl)}${nl}${closing}}`);
}
