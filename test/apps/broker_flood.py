#!/usr/bin/env python3
"""Opens many connections to a container's broker socket and holds them, as a hostile process in
that container could. Prints one JSON object.

  broker_flood.py SOCKET COUNT SECS

Makes COUNT connection attempts (SOCK_SEQPACKET, each sending an SF_HELLO as the preload does)
within at most SECS seconds, then holds whatever the broker kept until SECS have passed. Reports:
held (connections the broker kept open, its HELLO_OK with status 0), refused (answered HELLO_OK
with a non-zero status, the errno in "statuses"), closed (closed without an answer), busy (connect
failed at once: the socket's backlog was full) and errors (any other connect error), and seconds."""
import errno
import json
import select
import socket
import struct
import sys
import time

SF_HELLO, SF_HELLO_OK, SF_MSG_VERSION = 1, 101, 1
MSG = struct.Struct("=HHIiIIHHQ")  # struct sf_msg, 32 bytes


def main():
    path, count, secs = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    start = time.monotonic()
    end = start + secs
    socks = []
    busy = errors = 0
    hello = MSG.pack(SF_HELLO, SF_MSG_VERSION, 0, 0, 0, 0, 0, 0, 0)
    for _ in range(count):
        if time.monotonic() > end - 1:
            break
        s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        s.setblocking(False)
        try:
            s.connect(path)
        except BlockingIOError:
            busy += 1
            s.close()
            continue
        except OSError:
            errors += 1
            s.close()
            continue
        try:
            s.send(hello)
        except OSError:
            pass  # refused already: its answer is still there to read
        socks.append(s)
    # Every answer: HELLO_OK status 0 (kept), a refusal (status), or a close without one.
    held = refused = closed = 0
    statuses = {}
    pending = {s.fileno(): s for s in socks}
    poller = select.poll()
    for fd in pending:
        poller.register(fd, select.POLLIN)
    while pending and time.monotonic() < end:
        for fd, _ in poller.poll(200):
            poller.unregister(fd)
            s = pending.pop(fd)
            try:
                data = s.recv(64)
            except OSError:
                data = b""
            if len(data) == MSG.size:
                t, _, _, status, *_ = MSG.unpack(data)
                if t == SF_HELLO_OK and status == 0:
                    held += 1
                    continue
                refused += 1
                name = errno.errorcode.get(status, str(status))
                statuses[name] = statuses.get(name, 0) + 1
            else:
                closed += 1
            s.close()
    unanswered = len(pending)
    while time.monotonic() < end:
        time.sleep(0.1)
    print(json.dumps({"attempts": len(socks) + busy + errors, "held": held, "refused": refused, "statuses": statuses,
                      "closed": closed, "unanswered": unanswered, "busy": busy, "errors": errors,
                      "seconds": round(time.monotonic() - start, 2)}))


main()
