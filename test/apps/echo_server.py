#!/usr/bin/env python3
"""Test echo server. Usage: echo_server.py PORT [--fork N] [--threads N] [--bind ADDR]

Each connection first gets one line "hello <local ip:port> <peer ip:port> <pid>" (what accept() and
getsockname() told this process and thread), then every byte it sends is echoed back. With --fork N,
N worker processes accept on the one listening socket (fork after listen, like nginx); with
--threads N, N threads of one process do."""
import os
import signal
import socket
import sys
import threading


def fmt(addr):
    return f"{addr[0]}:{addr[1]}"


def serve(conn, peer):
    try:
        conn.sendall(f"hello {fmt(conn.getsockname())} {fmt(peer)} {os.getpid()} {threading.current_thread().name}\n".encode())
        while True:
            data = conn.recv(65536)
            if not data:
                break
            conn.sendall(data)
    except OSError:
        pass
    finally:
        conn.close()


def accept_loop(ls):
    while True:
        try:
            conn, peer = ls.accept()
        except InterruptedError:
            continue
        threading.Thread(target=serve, args=(conn, peer), daemon=True, name=threading.current_thread().name).start()


def main():
    port = int(sys.argv[1])
    workers = int(sys.argv[sys.argv.index("--fork") + 1]) if "--fork" in sys.argv else 0
    threads = int(sys.argv[sys.argv.index("--threads") + 1]) if "--threads" in sys.argv else 0
    bind = sys.argv[sys.argv.index("--bind") + 1] if "--bind" in sys.argv else "0.0.0.0"
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((bind, port))
    ls.listen(128)
    children = []
    for _ in range(workers):
        pid = os.fork()
        if pid == 0:
            accept_loop(ls)
            os._exit(0)
        children.append(pid)

    def stop(*_):
        for c in children:
            try:
                os.kill(c, signal.SIGTERM)
            except OSError:
                pass
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    print(f"listening {port}", flush=True)
    for i in range(threads):
        threading.Thread(target=accept_loop, args=(ls,), daemon=True, name=f"acceptor{i}").start()
    if workers or threads:
        signal.pause()
    else:
        accept_loop(ls)


if __name__ == "__main__":
    main()
