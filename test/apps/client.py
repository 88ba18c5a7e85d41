#!/usr/bin/env python3
"""Test client. Prints one JSON object.

  client.py echo HOST PORT COUNT   COUNT connections: connect, read the server's hello line, echo a
                                   message, close. Reports what both ends saw as addresses.
  client.py hold HOST PORT SECS    one connection held open for SECS seconds.
  client.py refused HOST PORT      expects the connect to fail; reports errno and how long it took.
  client.py connects HOST PORT COUNT
                                   COUNT such connects, one after the other: a JSON list of them.
  client.py then-refused HOST PORT COUNT
                                   COUNT echo connections, then one more connect after "go" on stdin.
  client.py held-refused HOST PORT COUNT
                                   the same, but the last connect's socket is made before the line
                                   (socket() may hand out a pooled socket) and connected after "go".
  client.py bound HOST PORT SPORT COUNT
                                   COUNT connections, the i-th from source port SPORT+i (bound
                                   before connecting): a JSON list of what the server saw as peer,
                                   or the error.
  client.py loop HOST PORT SECS MS one connection held open throughout (echoing at the start and at
                                   the end), and a new echo connection every MS ms for SECS seconds,
                                   each with its wall-clock start, duration and outcome."""
import json
import select
import socket
import sys
import time


def fmt(addr):
    return f"{addr[0]}:{addr[1]}"


def read_line(s):
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = s.recv(1)
        if not chunk:
            raise ConnectionError("server closed before its hello line")
        buf += chunk
    return buf.decode().strip()


def echo(s, text):
    """Sends text and reads as many bytes back: whether they are the same."""
    s.sendall(text.encode())
    got = b""
    while len(got) < len(text):
        chunk = s.recv(65536)
        if not chunk:
            break
        got += chunk
    return got.decode() == text


def one(host, port, i):
    s = socket.create_connection((host, port), timeout=10)
    try:
        hello = read_line(s).split()
        msg = f"message {i} " + "x" * (i % 100)
        echo_ok = echo(s, msg)
        return {
            "local": fmt(s.getsockname()),
            "peer": fmt(s.getpeername()),
            "server_local": hello[1],
            "server_peer": hello[2],
            "server_pid": int(hello[3]),
            "server_thread": hello[4],
            "echo_ok": echo_ok,
        }
    finally:
        s.close()


def try_connect(host, port, s=None):
    """One connect that may fail (on s, if given): whether it did, errno, and how long it took."""
    t0 = time.monotonic()
    try:
        if s is None:
            s = socket.create_connection((host, port), timeout=10)
        else:
            s.settimeout(10)
            s.connect((host, port))
        s.close()
        return {"connected": True, "seconds": time.monotonic() - t0}
    except OSError as e:
        return {"connected": False, "errno": e.errno, "error": str(e), "seconds": time.monotonic() - t0}


def bound(host, port, sport):
    """One connection from source port sport: the server's view of its peer, or the error."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.settimeout(10)
        s.bind(("0.0.0.0", sport))
        s.connect((host, port))
        hello = read_line(s).split()
        return {"sport": sport, "local": fmt(s.getsockname()), "server_peer": hello[2], "echo_ok": echo(s, "bound")}
    except OSError as e:
        return {"sport": sport, "errno": e.errno, "error": str(e)}
    finally:
        s.close()


def main():
    mode, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if mode == "echo":
        count = int(sys.argv[4])
        results, errors = [], []
        t0 = time.monotonic()
        for i in range(count):
            try:
                results.append(one(host, port, i))
            except OSError as e:
                errors.append(f"{type(e).__name__}: {e}")
        elapsed = time.monotonic() - t0
        print(json.dumps({"results": results, "errors": errors, "seconds": elapsed}))
    elif mode == "hold":
        s = socket.create_connection((host, port), timeout=10)
        hello = read_line(s)
        print(json.dumps({"local": fmt(s.getsockname()), "peer": fmt(s.getpeername()), "hello": hello}), flush=True)
        time.sleep(float(sys.argv[4]))
        s.close()
    elif mode in ("then-refused", "held-refused"):
        # COUNT echo connections, a line, then (after the test stopped the server or changed the
        # policy) one more connect once the line "go" arrives on stdin, bounded by a 30 s wait.
        # held-refused makes that connect's socket before the line.
        count = int(sys.argv[4])
        ok = sum(1 for i in range(count) if one(host, port, i)["echo_ok"])
        held = socket.socket(socket.AF_INET, socket.SOCK_STREAM) if mode == "held-refused" else None
        print(json.dumps({"echoed": ok}), flush=True)
        ready, _, _ = select.select([sys.stdin], [], [], 30)
        if ready:
            sys.stdin.readline()
        print(json.dumps(try_connect(host, port, held)))
    elif mode == "loop":
        secs, interval = float(sys.argv[4]), float(sys.argv[5]) / 1000
        held = socket.create_connection((host, port), timeout=10)
        read_line(held)
        start_ok = echo(held, "held at the start")
        print(json.dumps({"ready": True}), flush=True)
        attempts = []
        end = time.monotonic() + secs
        i = 0
        while time.monotonic() < end:
            t0, wall = time.monotonic(), time.time()
            try:
                r = one(host, port, i)
                attempts.append({"t": wall, "seconds": time.monotonic() - t0, "ok": r["echo_ok"]})
            except OSError as e:
                attempts.append({"t": wall, "seconds": time.monotonic() - t0, "ok": False,
                                 "error": f"{type(e).__name__}: {e}"})
            i += 1
            time.sleep(max(0.0, interval - (time.monotonic() - t0)))
        try:
            end_ok = echo(held, "held at the end")
        except OSError:
            end_ok = False
        print(json.dumps({"held_start_ok": start_ok, "held_end_ok": end_ok, "attempts": attempts}))
    elif mode == "refused":
        print(json.dumps(try_connect(host, port)))
    elif mode == "bound":
        sport, count = int(sys.argv[4]), int(sys.argv[5])
        print(json.dumps([bound(host, port, sport + i) for i in range(count)]))
    elif mode == "connects":
        print(json.dumps([try_connect(host, port) for _ in range(int(sys.argv[4]))]))
    else:
        sys.exit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
