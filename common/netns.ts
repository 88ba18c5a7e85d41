// Telling network namespaces apart without entering them.
import fs from 'node:fs';

/** "dev:ino" of a namespace file (e.g. /proc/PID/ns/net): what tells two namespaces apart, or undefined when it cannot be read. */
export function nsIdentity(p: string): string | undefined {
  try {
    const st = fs.statSync(p);
    return `${st.dev}:${st.ino}`;
  } catch {
    return undefined;
  }
}
