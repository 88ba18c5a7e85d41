#!/usr/bin/env python3
"""Tries to change how the reserved port's reuseport group picks sockets, from an application.

Usage: repoint.py PORT WAIT_S

Listens on PORT (under the preload this is a steered listener: a host socket in the reserved
port's group), waits WAIT_S seconds, then calls setsockopt straight through syscall(2), bypassing
any library: SO_ATTACH_REUSEPORT_CBPF with a program that always picks member 0, and
SO_DETACH_REUSEPORT_BPF. The same on a socket of its own with SO_REUSEPORT, where both must work.
Prints JSON with the errno name of each call (null when it succeeded)."""
import ctypes
import errno
import json
import socket
import struct
import sys
import time

SYS_setsockopt = 54  # x86_64
SO_ATTACH_REUSEPORT_CBPF = 51
SO_DETACH_REUSEPORT_BPF = 68
libc = ctypes.CDLL(None, use_errno=True)


def raw_setsockopt(fd, opt, buf):
    b = ctypes.create_string_buffer(buf, len(buf))
    r = libc.syscall(SYS_setsockopt, fd, socket.SOL_SOCKET, opt, b, len(buf))
    return None if r == 0 else errno.errorcode.get(ctypes.get_errno(), str(ctypes.get_errno()))


def cbpf_ret0():
    insn = (ctypes.c_ubyte * 8).from_buffer_copy(struct.pack("=HBBI", 0x06, 0, 0, 0))  # BPF_RET|BPF_K 0
    keep.append(insn)
    return struct.pack("=Hxxxxxx", 1) + struct.pack("=Q", ctypes.addressof(insn))


keep = []


def main():
    port, wait = int(sys.argv[1]), float(sys.argv[2])
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port))
    s.listen(16)
    time.sleep(wait)
    out = {
        "listener_cbpf": raw_setsockopt(s.fileno(), SO_ATTACH_REUSEPORT_CBPF, cbpf_ret0()),
        "listener_detach": raw_setsockopt(s.fileno(), SO_DETACH_REUSEPORT_BPF, struct.pack("=i", 0)),
    }
    own = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    own.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    out["own_cbpf"] = raw_setsockopt(own.fileno(), SO_ATTACH_REUSEPORT_CBPF, cbpf_ret0())
    own.bind(("127.0.0.1", 0))
    own.listen(1)
    out["own_detach"] = raw_setsockopt(own.fileno(), SO_DETACH_REUSEPORT_BPF, struct.pack("=i", 0))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
