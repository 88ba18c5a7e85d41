// The broker's hold on its state directory (common/state-dir.ts says where things are in it): claiming
// it at start, releasing it at stop, and writing its files atomically. A directory left behind by a
// killed daemon is taken over; one whose daemon is still alive is refused.
import fs from 'node:fs';
import net from 'node:net';
import { pidAlive, type StateLayout } from '../common/state-dir.js';

function socketAnswers(file: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(file);
    const done = (v: boolean) => {
      s.destroy();
      resolve(v);
    };
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
    setTimeout(() => done(false), 1000).unref();
  });
}

/** Prepares the directory for a new daemon; returns a note when leftovers were taken over. */
export async function claimStateDir(layout: StateLayout): Promise<string | undefined> {
  // Traversable, not listable: a container's processes of any uid reach its socket from the host's
  // mount namespace too (`slimfast container add`; runc containers get a bind mount of their own
  // directory). The broker takes a connection only from the container's network namespace, so a
  // host user or another container that finds the path is refused (Engine::peer_outside).
  fs.mkdirSync(layout.containersDir, { recursive: true, mode: 0o711 });
  fs.chmodSync(layout.containersDir, 0o711);
  let note: string | undefined;
  if (fs.existsSync(layout.pidFile)) {
    const pid = Number(fs.readFileSync(layout.pidFile, 'utf8').trim());
    if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && pidAlive(pid) && (await socketAnswers(layout.controlSocket))) {
      throw new Error(`another slimfast daemon (pid ${pid}) is serving ${layout.dir}; stop it first or pass a different --state-dir`);
    }
    note = `took over state dir ${layout.dir} left by pid ${pid}`;
  }
  fs.rmSync(layout.controlSocket, { force: true });
  fs.writeFileSync(layout.pidFile, `${process.pid}\n`);
  return note;
}

export function releaseStateDir(layout: StateLayout): void {
  fs.rmSync(layout.controlSocket, { force: true });
  try {
    if (fs.readFileSync(layout.pidFile, 'utf8').trim() === String(process.pid)) fs.rmSync(layout.pidFile, { force: true });
  } catch {
    // already gone
  }
}

/** Writes a file atomically (write a temporary file, then rename); mode: the new file's (default 644
 *  less the umask), given to the temporary file when it is created, so it is never more open. */
export function writeFileAtomic(file: string, data: string, mode?: number): void {
  const tmp = `${file}.${process.pid}.tmp`;
  fs.rmSync(tmp, { force: true });
  fs.writeFileSync(tmp, data, mode === undefined ? undefined : { mode });
  if (mode !== undefined) fs.chmodSync(tmp, mode);
  fs.renameSync(tmp, file);
}
