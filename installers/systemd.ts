// `slimfast install systemd -- DAEMON_FLAGS…`: a unit that runs the broker as a service, restarted
// when it fails, with its state dir in /run/slimfast. The state dir survives restarts
// (RuntimeDirectoryPreserve) so that a restarted broker takes over its containers' registrations.
import { type EngineWriter, refuseFlags } from './engine.js';
import { type FileChange, InstallError } from './file-change.js';

export const DEFAULT_SYSTEMD_UNIT = '/etc/systemd/system/slimfast.service';
export const SYSTEMD_STATE_DIR = '/run/slimfast';

export interface SystemdOptions {
  /** Absolute path of the node binary and of the CLI script (dist/cli/main.js). */
  node: string;
  cli: string;
  /** The daemon's flags, e.g. ['--host-ip', '10.0.0.1', '--etcd', 'http://10.0.0.5:2379']. */
  daemonArgs: string[];
}

/** One ExecStart word, quoted for systemd when it needs to be ($ and % are systemd's own). */
export function systemdWord(w: string): string {
  const escaped = w.replace(/%/g, '%%').replace(/\$/g, '$$$$');
  if (escaped !== '' && /^[A-Za-z0-9_@%+=:,./-]+$/.test(escaped)) return escaped;
  return `"${escaped.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
}

export function systemdUnit(o: SystemdOptions): string {
  const exec = [o.node, o.cli, 'daemon', '--state-dir', SYSTEMD_STATE_DIR, ...o.daemonArgs].map(systemdWord).join(' ');
  return `# Written by \`slimfast install systemd\`; run it again to change the flags.
[Unit]
Description=SlimFast broker: container TCP on host sockets
After=network-online.target
Wants=network-online.target

[Service]
Type=exec
ExecStart=${exec}
Restart=on-failure
RestartSec=1
# The state dir outlives a restart: the next broker takes its registrations over.
RuntimeDirectory=slimfast
RuntimeDirectoryMode=0755
RuntimeDirectoryPreserve=yes
KillSignal=SIGTERM
# Stop and restart the broker only: slimfast-seccomp-keeper, which it starts in this cgroup, keeps
# seccomp containers' notify fds meanwhile (killing it would leave those containers without
# connect()); it exits by itself once no container uses it.
KillMode=process
TimeoutStopSec=15
LimitNOFILE=1048576

[Install]
WantedBy=multi-user.target
`;
}

export function planSystemd(file: string, before: string | undefined, o: SystemdOptions): FileChange {
  const flags = o.daemonArgs;
  if (!flags.includes('--host-ip') && !flags.some((f) => f.startsWith('--host-ip='))) {
    throw new InstallError('the daemon needs --host-ip: slimfast install systemd -- --host-ip IP [--peers FILE | --etcd URL …]');
  }
  const has = (f: string) => flags.some((x) => x === f || x.startsWith(`${f}=`));
  if (has('--peers') && !has('--cluster-key') && !has('--insecure-host-keys')) {
    throw new InstallError(
      'a broker with --peers needs --cluster-key FILE, the same file on every host (make it once: head -c 32 /dev/urandom > /etc/slimfast/cluster.key ' +
        '&& chmod 600 /etc/slimfast/cluster.key, then copy it); the daemon refuses a peers file naming other hosts without one. ' +
        '(--insecure-host-keys runs without a key: any container whose traffic a host masquerades could then pose as that host)',
    );
  }
  for (const f of ['--state-dir', '--help']) {
    if (flags.some((x) => x === f || x.startsWith(`${f}=`)))
      throw new InstallError(`${f} is not for the unit: its state dir is ${SYSTEMD_STATE_DIR}`);
  }
  return { file, before, after: systemdUnit(o) };
}

export const SYSTEMD_HINT = 'then: systemctl daemon-reload && systemctl enable --now slimfast';

/** `slimfast install systemd [--unit FILE] -- DAEMON_FLAGS…`. */
export const systemdWriter: EngineWriter<SystemdOptions> = {
  name: 'systemd',
  defaultConfig: DEFAULT_SYSTEMD_UNIT,
  takesDaemonArgs: true,
  options: ({ flags, daemonArgs, paths, node }) => {
    refuseFlags(flags, ['config', 'hooks-dir', 'state-dir', 'when-annotation'], (f) => `--${f} is not an option of install systemd`);
    return { target: (flags.unit as string | undefined) ?? DEFAULT_SYSTEMD_UNIT, opts: { node, cli: paths.cli, daemonArgs } };
  },
  plan: (file, read, opts) => [planSystemd(file, read(file), opts)],
  hint: () => SYSTEMD_HINT,
};
