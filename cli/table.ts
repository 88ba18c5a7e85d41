// Plain aligned tables for people reading `slimfast status` and `container ls`.
export function printTable(title: string | undefined, head: string[], rows: (string | number)[][]): void {
  if (title) console.log(`\n${title}:`);
  if (rows.length === 0) {
    console.log('  (none)');
    return;
  }
  const cells = [head, ...rows.map((r) => r.map(String))];
  const widths = head.map((_, i) => Math.max(...cells.map((r) => r[i].length)));
  for (const r of cells)
    console.log(
      '  ' +
        r
          .map((c, i) => c.padEnd(widths[i]))
          .join('  ')
          .trimEnd(),
    );
}
