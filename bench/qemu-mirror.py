#!/usr/bin/python3
"""bench/qemu-mirror.py: drive QEMU's active mirror over QMP for bench/mirror.sh (standard library only).

  qemu-mirror.py --qmp SOCK start --job m0 --source r0 --node t0 (--unix PATH | --tcp HOST:PORT) --export NAME
      blockdev-add an NBD client node NODE for the target, then blockdev-mirror SOURCE -> NODE with
      sync=full and copy-mode=write-blocking (every guest write completes only once the target has it),
      and wait for BLOCK_JOB_READY. Prints the seconds the initial copy took.
  qemu-mirror.py --qmp SOCK stop --job m0 --node t0
      block-job-cancel (on a ready mirror: complete without pivoting, the target stays consistent), wait for
      BLOCK_JOB_COMPLETED, then blockdev-del the target node.

The QMP socket is qemu-storage-daemon's `--chardev socket,id=qmp,path=SOCK,server=on,wait=off --monitor chardev=qmp`.
Errors (QMP errors, the job failing, a timeout) are printed on stderr with exit status 1.
"""

import argparse
import json
import select
import socket
import sys
import time


class QMPError(Exception):
    pass


class QMP:
    """One QMP connection: commands and their replies, with events kept for wait_event."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.sock.connect(path)
        except OSError as e:
            raise QMPError(f"connect to QMP socket {path}: {e}") from e
        self.buf = b""
        self.events = []
        greeting = self._read(30)
        if "QMP" not in greeting:
            raise QMPError(f"{path} is not a QMP socket: {greeting}")
        self.cmd("qmp_capabilities")

    def _read(self, timeout):
        """The next JSON message, or None after timeout seconds."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            r, _, _ = select.select([self.sock], [], [], left)
            if not r:
                return None
            data = self.sock.recv(65536)
            if not data:
                raise QMPError("QMP connection closed by qemu-storage-daemon")
            self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def cmd(self, name, **args):
        msg = {"execute": name}
        if args:
            msg["arguments"] = args
        self.sock.sendall(json.dumps(msg).encode() + b"\n")
        while True:
            r = self._read(60)
            if r is None:
                raise QMPError(f"{name}: no reply within 60 s")
            if "event" in r:
                self.events.append(r)
            elif "error" in r:
                raise QMPError(f"{name}: {r['error'].get('desc', r['error'])}")
            elif "return" in r:
                return r["return"]

    def next_event(self, timeout):
        if self.events:
            return self.events.pop(0)
        r = self._read(timeout)
        if r is not None and "event" not in r:
            raise QMPError(f"unexpected QMP message: {r}")
        return r


def job_info(q, job):
    for j in q.cmd("query-block-jobs"):
        if j.get("device") == job:
            return j
    return None


def start(q, a):
    if a.unix:
        server = {"type": "unix", "path": a.unix}
    else:
        host, _, port = a.tcp.rpartition(":")
        server = {"type": "inet", "host": host, "port": port}
    q.cmd("blockdev-add", driver="nbd", **{"node-name": a.node}, server=server, export=a.export)
    t0 = time.monotonic()
    q.cmd("blockdev-mirror", **{"job-id": a.job, "copy-mode": "write-blocking"},
          device=a.source, target=a.node, sync="full")
    last = t0
    while True:
        ev = q.next_event(1)
        if ev is not None and ev.get("data", {}).get("device") == a.job:
            name = ev["event"]
            if name == "BLOCK_JOB_READY":
                print(f"{time.monotonic() - t0:.2f}")
                return
            if name in ("BLOCK_JOB_COMPLETED", "BLOCK_JOB_CANCELLED", "BLOCK_JOB_ERROR"):
                raise QMPError(f"mirror job {a.job} ended before it was ready: {name} {ev.get('data')}")
        now = time.monotonic()
        if now - t0 > a.timeout:
            raise QMPError(f"mirror job {a.job} not ready after {a.timeout} s: {job_info(q, a.job)}")
        if now - last >= 5:
            last = now
            j = job_info(q, a.job)
            if j is None:
                raise QMPError(f"mirror job {a.job} is gone before it was ready")
            if j.get("len"):
                print(f"qemu-mirror.py: {a.job}: {100 * j['offset'] / j['len']:.0f}% copied",
                      file=sys.stderr)


def stop(q, a):
    if job_info(q, a.job) is not None:
        q.cmd("block-job-cancel", device=a.job)
        deadline = time.monotonic() + a.timeout
        while True:
            ev = q.next_event(1)
            if ev is not None and ev.get("data", {}).get("device") == a.job:
                if ev["event"] == "BLOCK_JOB_COMPLETED":
                    if ev["data"].get("error"):
                        raise QMPError(f"mirror job {a.job} completed with error: {ev['data']['error']}")
                    break
                if ev["event"] == "BLOCK_JOB_CANCELLED":  # cancelled before ready: target incomplete
                    raise QMPError(f"mirror job {a.job} was cancelled before it was ready")
            if time.monotonic() > deadline:
                raise QMPError(f"mirror job {a.job} did not complete within {a.timeout} s")
    q.cmd("blockdev-del", **{"node-name": a.node})


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--qmp", required=True, help="qemu-storage-daemon's QMP unix socket")
    sub = ap.add_subparsers(dest="op", required=True)
    s = sub.add_parser("start")
    s.add_argument("--job", required=True)
    s.add_argument("--source", required=True, help="node name of the exported source")
    s.add_argument("--node", required=True, help="node name to give the NBD target")
    g = s.add_mutually_exclusive_group(required=True)
    g.add_argument("--unix", help="the target NBD server's unix socket")
    g.add_argument("--tcp", help="the target NBD server's HOST:PORT")
    s.add_argument("--export", required=True, help="the target's export name")
    s.add_argument("--timeout", type=float, default=600)
    t = sub.add_parser("stop")
    t.add_argument("--job", required=True)
    t.add_argument("--node", required=True)
    t.add_argument("--timeout", type=float, default=120)
    a = ap.parse_args()
    q = QMP(a.qmp)
    {"start": start, "stop": stop}[a.op](q, a)


if __name__ == "__main__":
    try:
        main()
    except (QMPError, OSError, ValueError) as e:
        print(f"qemu-mirror.py: {e}", file=sys.stderr)
        sys.exit(1)
