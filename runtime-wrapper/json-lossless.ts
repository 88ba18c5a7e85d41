// JSON that survives a read/modify/write unchanged where we do not touch it. OCI configs hold 64-bit
// integers (seccomp argument values and masks, memory limits) that JSON.parse would round to a double
// and the engine's Go decoder would then reject or misread. Integers that a double cannot hold exactly
// are carried through as tagged strings and written back as the original digits.

const TAG = '\u0000slimfast-int:';

/** Parses JSON, keeping integer literals beyond 2^53 as their exact text (see stringifyLossless). */
export function parseLossless(text: string): unknown {
  let out = '';
  let last = 0;
  const n = text.length;
  let i = 0;
  while (i < n) {
    const c = text.charCodeAt(i);
    if (c === 0x22 /* " */) {
      i++;
      while (i < n) {
        const d = text.charCodeAt(i);
        if (d === 0x5c /* \ */) i += 2;
        else if (d === 0x22) {
          i++;
          break;
        } else i++;
      }
      continue;
    }
    if (c === 0x2d /* - */ || (c >= 0x30 && c <= 0x39)) {
      const start = i;
      i++;
      while (i < n) {
        const d = text.charCodeAt(i);
        if ((d >= 0x30 && d <= 0x39) || d === 0x2e || d === 0x65 || d === 0x45 || d === 0x2b || d === 0x2d) i++;
        else break;
      }
      const literal = text.slice(start, i);
      if (/^-?\d+$/.test(literal) && !Number.isSafeInteger(Number(literal))) {
        out += text.slice(last, start) + JSON.stringify(TAG + literal);
        last = i;
      }
      continue;
    }
    i++;
  }
  return JSON.parse(last === 0 ? text : out + text.slice(last));
}

/** JSON.stringify that writes the integers kept by parseLossless back as plain numbers. */
export function stringifyLossless(value: unknown, indent?: string | number): string {
  const text = JSON.stringify(value, null, indent);
  if (!text.includes('\\u0000slimfast-int:')) return text;
  return text.replace(/"\\u0000slimfast-int:(-?\d+)"/g, '$1');
}

/** The indentation a JSON document was written with: '' for compact, else the first indent seen. */
export function detectIndent(text: string): string {
  const m = /^[{[]\r?\n([ \t]+)\S/.exec(text.trimStart());
  return m ? m[1] : '';
}
