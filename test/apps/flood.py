#!/usr/bin/env python3
"""Opens many connections to a reserved port at once and reports how each one ended.

Usage: flood.py DST_IP PORT SRC_IP COUNT garbage|partial|silent|slow HOLD_S

garbage: 48 random bytes; partial: the first 20 bytes of a header, then nothing; silent: no bytes;
slow: a header's bytes one per 200 ms. Keeps every connection open up to HOLD_S seconds unless the
peer closes it, then prints JSON {"closed_by_peer": n, "still_open": n, "connect_errors": n,
"seconds": s}."""
import json
import os
import selectors
import socket
import struct
import sys
import time


def main():
    dst, port, src, count, mode, hold = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), sys.argv[5], float(sys.argv[6])
    header = struct.pack(">IBBH", 0x534C4631, 1, 1, 48) + bytes(44)
    sel = selectors.DefaultSelector()
    socks, errors = [], 0
    t0 = time.monotonic()
    for _ in range(count):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind((src, 0))
            s.connect((dst, port))
        except OSError:
            errors += 1
            s.close()
            continue
        if mode == "garbage":
            s.sendall(os.urandom(48))
        elif mode == "partial":
            s.sendall(header[:20])
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
        socks.append(s)
    open_socks = set(socks)
    sent = 0
    next_drip = time.monotonic()
    deadline = t0 + hold
    while open_socks and time.monotonic() < deadline:
        if mode == "slow" and time.monotonic() >= next_drip and sent < len(header):
            for s in list(open_socks):
                try:
                    s.send(header[sent:sent + 1])
                except OSError:
                    pass
            sent += 1
            next_drip += 0.2
        for key, _ in sel.select(timeout=0.05):
            s = key.fileobj
            try:
                data = s.recv(4096)
            except OSError:
                data = b""
            if not data:
                sel.unregister(s)
                open_socks.discard(s)
    out = {"closed_by_peer": len(socks) - len(open_socks), "still_open": len(open_socks), "connect_errors": errors,
           "seconds": round(time.monotonic() - t0, 2)}
    for s in socks:
        s.close()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
