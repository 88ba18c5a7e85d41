// Exit notifications for processes: a pidfd per watched process, polled by Node's own event loop
// (native/addon/pid_watch.cc). The registry watches each container's init process with it.
import os from 'node:os';
import { loadAddon } from './native-engine.js';

export interface ExitWatcher {
  /** Calls onExit once, when pid exits. Returns what cancels the watch, or undefined when there is no
   *  such process (it has exited already). */
  watch(pid: number, onExit: () => void): (() => void) | undefined;
}

export class PidfdExitWatcher implements ExitWatcher {
  watch(pid: number, onExit: () => void): (() => void) | undefined {
    const addon = loadAddon();
    const id = addon.watchExit(pid, onExit);
    if (id > 0) return () => void addon.unwatchExit(id);
    if (id === -os.constants.errno.ESRCH) return undefined;
    throw new Error(`cannot watch process ${pid} for its exit (pidfd_open: errno ${-id}); Linux 5.3 or later is needed`);
  }
}
