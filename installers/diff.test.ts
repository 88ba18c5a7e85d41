import test from 'ava';
import { unifiedDiff } from './diff.js';

test('equal texts: no diff', (t) => {
  t.is(unifiedDiff('a\nb\n', 'a\nb\n', 'x', 'y'), '');
});

test('an insertion with three lines of context and correct hunk header', (t) => {
  const before = `${['1', '2', '3', '4', '5', '6', '7', '8'].join('\n')}\n`;
  const after = `${['1', '2', '3', '4', 'new a', 'new b', '5', '6', '7', '8'].join('\n')}\n`;
  t.is(
    unifiedDiff(before, after, 'f', 'f'),
    ['--- f', '+++ f', '@@ -2,6 +2,8 @@', ' 2', ' 3', ' 4', '+new a', '+new b', ' 5', ' 6', ' 7', ''].join('\n'),
  );
});

test('a new file and a replaced line; far-apart changes make separate hunks', (t) => {
  t.is(unifiedDiff('', 'x\ny\n', '/dev/null', 'f'), '--- /dev/null\n+++ f\n@@ -0,0 +1,2 @@\n+x\n+y\n');
  const lines = Array.from({ length: 30 }, (_, i) => `l${i}`);
  const changed = [...lines];
  changed[2] = 'L2';
  changed[25] = 'L25';
  const d = unifiedDiff(lines.join('\n'), changed.join('\n'), 'a', 'b');
  t.is(d.match(/^@@/gm)!.length, 2);
  t.regex(d, /^-l2\n\+L2$/m);
  t.regex(d, /^-l25\n\+L25$/m);
});
