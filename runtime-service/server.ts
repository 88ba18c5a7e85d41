// The runtime service: a Unix socket in the broker's state directory (STATE_DIR/runtime.sock, mode
// 600) where slimfast-runc and slimfast-hook hand over their work, so a container start pays no
// Node.js start-up. One request per connection (protocol.ts). Anything this service cannot do
// (another install, another config file, a request it cannot read, an internal error) is answered
// "fallback", and the caller runs the same work as its own Node.js program, as it does when no
// broker listens here.
import fs from 'node:fs';
import net from 'node:net';
import { type DoorReply, type DoorRequest, DoorRequestError, encodeReply, parseRequest, REQUEST_MAX_BYTES } from './protocol.js';
import { type ServiceSelf, handle, thisInstall } from './handlers.js';

export interface ServiceLog {
  warn(msg: string): void;
  debug(msg: string): void;
}

export interface ServiceCounters {
  served: number;
  fallbacks: number;
}

export class RuntimeService {
  readonly counters: ServiceCounters = { served: 0, fallbacks: 0 };
  private readonly conns = new Set<net.Socket>();

  private constructor(
    private readonly server: net.Server,
    readonly socket: string,
  ) {}

  static async start(socket: string, log: ServiceLog, self: ServiceSelf = thisInstall()): Promise<RuntimeService> {
    // The state dir is this broker's (claimed): a file here is a dead broker's socket.
    fs.rmSync(socket, { force: true });
    const server = net.createServer({ allowHalfOpen: true }); // the client shuts down its side after the request
    const svc = new RuntimeService(server, socket);
    server.on('connection', (c) => svc.serve(c, log, self));
    const old = process.umask(0o177);
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(socket, () => resolve());
      });
    } finally {
      process.umask(old);
    }
    fs.chmodSync(socket, 0o600);
    return svc;
  }

  private serve(c: net.Socket, log: ServiceLog, self: ServiceSelf): void {
    this.conns.add(c);
    c.on('close', () => this.conns.delete(c));
    c.on('error', () => c.destroy());
    const chunks: Buffer[] = [];
    let size = 0;
    let answered = false;
    const reply = (r: DoorReply) => {
      if (answered) return;
      answered = true;
      if ('fallback' in r) this.counters.fallbacks++;
      else this.counters.served++;
      c.end(encodeReply(r));
    };
    c.on('data', (b: Buffer) => {
      size += b.length;
      if (size > REQUEST_MAX_BYTES) {
        reply({ fallback: `request over ${REQUEST_MAX_BYTES} bytes` });
        c.destroy();
        return;
      }
      chunks.push(b);
    });
    c.on('end', () => {
      if (answered) return;
      const text = Buffer.concat(chunks).toString('utf8').trimEnd();
      let req: DoorRequest;
      try {
        req = parseRequest(text);
      } catch (err) {
        if (!(err instanceof DoorRequestError)) throw err;
        log.warn(`runtime service: unreadable request (${err.message}): the caller runs on its own`);
        reply({ fallback: err.message });
        return;
      }
      const t0 = performance.now();
      handle(req, self).then(
        (r) => {
          const what = `runtime service: ${req.prog} ${req.argv.join(' ')}`.slice(0, 300);
          log.debug('fallback' in r ? `${what}: ${r.fallback}` : `${what}: exit ${r.code} in ${(performance.now() - t0).toFixed(1)} ms`);
          reply(r);
        },
        (err: unknown) => {
          log.warn(
            `runtime service: ${req.prog} ${req.argv[0] ?? ''} failed inside the broker (${(err as Error).message}): the caller runs on its own`,
          );
          reply({ fallback: 'internal error' });
        },
      );
    });
  }

  async stop(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const c of this.conns) c.destroy();
    await closed;
    fs.rmSync(this.socket, { force: true });
  }
}
