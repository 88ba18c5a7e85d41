// Listener sync between brokers (docs/protocol.md §3): every broker streams its SlimFast listener
// table to the peers that subscribe, and subscribes to every peer so that its native engine knows
// which remote (vIP, port) pairs are SlimFast listeners.
import net from 'node:net';
import readline from 'node:readline';
import type { NativeEngine } from './native-engine.js';
import type { HostEntry } from './peers.js';

const PING_MS = 2000;
const DEAD_MS = 6000;
/** A subscription connect that gets no answer this soon is given up and tried again. */
const CONNECT_MS = 1000;
/** Retries of a lost subscription grow to this: a peer whose broker restarts is back in about a second. */
const MAX_BACKOFF_MS = 1000;

type SyncLine = { type: 'full'; host: string; listeners: string[] } | { type: 'add' | 'remove'; listener: string } | { type: 'ping' };

export interface PeerState {
  peer: HostEntry;
  synced: boolean;
  listeners: Set<string>;
}

export class ListenerSync {
  private readonly subscribers = new Set<net.Socket>();
  private readonly subscriberIp = new WeakMap<net.Socket, string>();
  private readonly peers = new Map<string, PeerState & { socket?: net.Socket; timer?: NodeJS.Timeout; backoff: number }>();
  private pingTimer?: NodeJS.Timeout;
  private stopped = false;

  constructor(
    private readonly hostIp: string,
    private readonly engine: NativeEngine,
    private readonly log: (level: 'info' | 'warn' | 'debug', msg: string) => void,
  ) {}

  start(peers: HostEntry[]): void {
    this.setPeers(peers);
    this.pingTimer = setInterval(() => this.broadcast({ type: 'ping' }), PING_MS);
  }

  /** The peer set changed (etcd membership): subscribe to new hosts, let go of departed ones. */
  setPeers(peers: HostEntry[]): void {
    const wanted = new Map(peers.map((p) => [p.ip, p]));
    for (const [ip, state] of this.peers) {
      const next = wanted.get(ip);
      if (next && next.port === state.peer.port) {
        state.peer = next;
        continue;
      }
      this.peers.delete(ip);
      if (state.timer) clearTimeout(state.timer);
      state.socket?.destroy();
      this.engine.setRemoteListeners(ip, null);
      for (const s of this.subscribers) if (this.subscriberIp.get(s) === ip) s.destroy();
    }
    for (const peer of peers) {
      if (this.peers.has(peer.ip)) continue;
      this.peers.set(peer.ip, { peer, synced: false, listeners: new Set(), backoff: 200 });
      this.engine.setRemoteListeners(peer.ip, null);
      this.subscribe(peer.ip);
    }
  }

  stop(): void {
    this.stopped = true;
    if (this.pingTimer) clearInterval(this.pingTimer);
    for (const s of this.subscribers) s.destroy();
    for (const p of this.peers.values()) {
      if (p.timer) clearTimeout(p.timer);
      p.socket?.destroy();
    }
  }

  peerStates(): PeerState[] {
    return [...this.peers.values()].map(({ peer, synced, listeners }) => ({ peer, synced, listeners }));
  }

  /** A local listener appeared or went away (event from the native engine): tell the subscribers. */
  localChange(op: 'add' | 'remove', key: string): void {
    this.broadcast({ type: op, listener: key });
  }

  /** A peer opened a SYNC stream to us; fd has its header consumed already. */
  acceptSubscriber(fd: number, peerIp: string): void {
    const socket = new net.Socket({ fd, readable: true, writable: true });
    if (!this.peers.has(peerIp)) {
      this.log('warn', `refusing listener sync from ${peerIp}: not a peer of this host`);
      socket.destroy();
      return;
    }
    socket.setNoDelay(true);
    socket.on('error', () => socket.destroy());
    socket.on('close', () => this.subscribers.delete(socket));
    socket.resume(); // subscribers send nothing after the header; read and drop anything else
    this.subscribers.add(socket);
    this.subscriberIp.set(socket, peerIp);
    // The engine's own table, not a copy kept here. It may be ahead of listener events still queued
    // for this thread; they follow the snapshot and are idempotent, so the subscriber ends up equal.
    this.send(socket, { type: 'full', host: this.hostIp, listeners: this.engine.listeners().map((l) => `${l.ip}:${l.port}`) });
  }

  private send(socket: net.Socket, line: SyncLine): void {
    if (!socket.destroyed) socket.write(`${JSON.stringify(line)}\n`);
  }

  private broadcast(line: SyncLine): void {
    for (const s of this.subscribers) this.send(s, line);
  }

  private subscribe(peerIp: string): void {
    const state = this.peers.get(peerIp);
    if (!state || this.stopped) return;
    const socket = net.connect({ host: state.peer.ip, port: state.peer.port, localAddress: this.hostIp });
    state.socket = socket;
    let deadTimer: NodeJS.Timeout | undefined;
    const alive = () => {
      if (deadTimer) clearTimeout(deadTimer);
      deadTimer = setTimeout(() => socket.destroy(new Error('no data for 6 s')), DEAD_MS);
    };
    socket.setNoDelay(true);
    // A peer whose broker died may leave its reserved port held by steered listeners that drop
    // what they cannot steer: our SYN would wait for TCP's retransmissions, and the restarted
    // broker would be noticed seconds late. Try again soon instead.
    const connectTimer = setTimeout(() => socket.destroy(new Error(`no answer within ${CONNECT_MS} ms`)), CONNECT_MS);
    socket.once('connect', () => {
      clearTimeout(connectTimer);
      // Without a cluster key the tag announces our host key (the peer checks our pooled headers
      // with it); with one the header is signed with our derived key and carries a fresh nonce.
      socket.write(this.engine.syncHeader());
      alive();
    });
    const lines = readline.createInterface({ input: socket });
    lines.on('error', () => {}); // the socket's own error handler below reports it
    lines.on('line', (text) => {
      alive();
      let msg: SyncLine;
      try {
        msg = JSON.parse(text) as SyncLine;
      } catch {
        socket.destroy(new Error('malformed sync line'));
        return;
      }
      if (msg.type === 'full') {
        state.listeners = new Set(msg.listeners);
        state.synced = true;
        state.backoff = 200;
        this.log('info', `listener table of ${peerIp} in sync (${state.listeners.size} listeners)`);
      } else if (msg.type === 'add') {
        state.listeners.add(msg.listener);
      } else if (msg.type === 'remove') {
        state.listeners.delete(msg.listener);
      } else {
        return;
      }
      if (this.peers.get(peerIp) !== state) return;
      if (state.synced) this.engine.setRemoteListeners(peerIp, [...state.listeners]);
    });
    socket.on('error', (err) => this.log('debug', `listener sync with ${peerIp}: ${err.message}`));
    socket.on('close', () => {
      clearTimeout(connectTimer);
      if (deadTimer) clearTimeout(deadTimer);
      if (this.peers.get(peerIp) !== state) return; // the peer left (or left and came back anew)
      if (state.synced) this.log('warn', `lost listener sync with ${peerIp}; its connections take the ordinary path until it is back`);
      state.synced = false;
      state.listeners.clear();
      this.engine.setRemoteListeners(peerIp, null);
      if (this.stopped) return;
      state.timer = setTimeout(() => this.subscribe(peerIp), state.backoff);
      state.backoff = Math.min(state.backoff * 2, MAX_BACKOFF_MS);
    });
  }
}
