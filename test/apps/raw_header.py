#!/usr/bin/env python3
"""Sends one raw host connection header to a reserved port and reports what came back.

Usage: raw_header.py DST_IP PORT SRC_IP HEADER_HEX [plain|tfo] [WAIT_S]

plain: connect, then send the header (it reaches the receiving broker); tfo: the header rides in
the SYN (TCP Fast Open without a cookie), so the receiving kernel's steering program sees it first.
Prints JSON: {"data": text received, "error": errno name or null, "closed": peer closed or reset}."""
import errno
import json
import socket
import sys
import time

TCP_FASTOPEN_NO_COOKIE = 34


def main():
    dst, port, src, hexhdr = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    mode = sys.argv[5] if len(sys.argv) > 5 else "plain"
    wait = float(sys.argv[6]) if len(sys.argv) > 6 else 2.0
    hdr = bytes.fromhex(hexhdr)
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(wait)
    s.bind((src, 0))
    out = {"data": "", "error": None, "closed": False}
    deadline = time.monotonic() + wait
    try:
        if mode == "tfo":
            s.setsockopt(socket.IPPROTO_TCP, TCP_FASTOPEN_NO_COOKIE, 1)
            s.sendto(hdr, socket.MSG_FASTOPEN, (dst, port))
        else:
            s.connect((dst, port))
            s.sendall(hdr)
        while time.monotonic() < deadline:
            s.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = s.recv(4096)
            if not chunk:
                out["closed"] = True
                break
            out["data"] += chunk.decode("latin1")
            if "\n" in out["data"]:
                break
    except socket.timeout:
        pass
    except OSError as e:
        out["error"] = errno.errorcode.get(e.errno, str(e.errno))
        out["closed"] = e.errno in (errno.ECONNRESET, errno.ECONNREFUSED, errno.EPIPE)
    finally:
        s.close()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
