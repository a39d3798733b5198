#!/usr/bin/python3
"""bench/report.py: turn bench/nbd.sh's fio JSON files into the markdown for bench/RESULTS.md.

Reads OUT/fio/WORKLOAD.SERVER.json (fio --output-format=json), OUT/rss.json and OUT/env.txt;
prints a markdown section: one row per workload with IOPS, MiB/s and p99 completion latency per
server, and the ratios Extrasphere/qemu-nbd and Extrasphere/nbdkit (of IOPS; for a fixed block size
that is also the bandwidth ratio). Only the standard library is used.
"""

import argparse
import json
import os
import sys


def load(path):
    """Parse a fio JSON file; fio may print warnings before the JSON object."""
    with open(path, encoding="utf-8", errors="replace") as f:
        text = f.read()
    start = text.find("{")
    if start < 0:
        raise ValueError(f"{path}: no JSON object")
    return json.loads(text[start:])


def summarize(doc):
    """Sum IOPS and bandwidth over all jobs and directions; take the worst p99 latency."""
    iops = bw_kib = 0.0
    p99_ns = 0
    for job in doc.get("jobs", []):
        for d in ("read", "write"):
            st = job.get(d, {})
            if not st.get("total_ios"):
                continue
            iops += st.get("iops", 0.0)
            bw_kib += st.get("bw", 0)
            pct = st.get("clat_ns", {}).get("percentile", {})
            p99_ns = max(p99_ns, int(pct.get("99.000000", 0)))
        errs = job.get("error", 0)
        if errs:
            raise ValueError(f"fio job {job.get('jobname')} reported error {errs}")
    return {"iops": iops, "mib_s": bw_kib / 1024.0, "p99_us": p99_ns / 1000.0}


def fmt_iops(v):
    return f"{v / 1000:.1f}k" if v >= 10000 else f"{v:.0f}"


def ratio(a, b):
    if a is None or b is None or b["iops"] == 0:
        return "n/a"
    return f"{a['iops'] / b['iops']:.2f}x"


def lat_section(out_dir, servers, rate):
    """4 KiB random writes at QD32 at one fixed rate for every server: the completion latency
    percentiles at equal load, and Extrasphere's p99 against qemu-nbd's and nbdkit's."""
    res = {}
    for s in servers:
        doc = load(os.path.join(out_dir, "fio", f"lat.{s}.json"))
        st = doc["jobs"][0]["write"]
        pct = st.get("clat_ns", {}).get("percentile", {})
        res[s] = {"iops": st.get("iops", 0.0), "p50": pct.get("50.000000", 0) / 1000.0,
                  "p99": pct.get("99.000000", 0) / 1000.0, "p999": pct.get("99.900000", 0) / 1000.0}
    out = ["", f"### Latency at one rate: randwrite-4k-qd32 at {rate} IOPS for every server", "",
           "| server | IOPS | p50 µs | p99 µs | p99.9 µs |", "|---|--:|--:|--:|--:|"]
    for s in servers:
        r = res[s]
        out.append(f"| {s} | {fmt_iops(r['iops'])} | {r['p50']:.0f} | {r['p99']:.0f} | {r['p999']:.0f} |")
    es = res.get("extrasphere")
    if es:
        notes = [f"- p99 Extrasphere/{peer}: {es['p99'] / res[peer]['p99']:.2f}x (lower is better)"
                 for peer in ("qemu-nbd", "nbdkit") if res.get(peer, {}).get("p99")]
        if notes:
            out += [""] + notes
    return out


def pin_section(out_dir, servers, rounds):
    """4 KiB random writes at QD32, unbounded, each server's threads on CPU 0 and fio on CPU 1, in
    rounds with the servers' order rotated: IOPS and p99 per round, the median p99, and
    Extrasphere's median p99 against each peer's."""
    if rounds <= 0:
        return []
    res = {s: [summarize(load(os.path.join(out_dir, "fio", f"pin{r}.{s}.json"))) for r in range(1, rounds + 1)]
           for s in servers}
    out = ["", "### randwrite-4k-qd32, unbounded, each server on CPU 0 and fio on CPU 1", "",
           f"- {rounds} rounds, the servers' order rotated each round; `taskset -a -p -c 0 PID` for the server "
           "(its threads, and those it starts), `taskset -c 1 fio`", ""]
    head = ["server"] + [f"round {r} IOPS / p99 µs" for r in range(1, rounds + 1)] + ["median p99 µs"]
    out.append("| " + " | ".join(head) + " |")
    out.append("|" + "|".join(["---"] + ["--:"] * (len(head) - 1)) + "|")
    med = {}
    for s in servers:
        p99s = sorted(x["p99_us"] for x in res[s])
        med[s] = p99s[len(p99s) // 2] if len(p99s) % 2 else (p99s[len(p99s) // 2 - 1] + p99s[len(p99s) // 2]) / 2
        out.append("| " + " | ".join([s] + [f"{fmt_iops(x['iops'])} / {x['p99_us']:.0f}" for x in res[s]] +
                                     [f"{med[s]:.0f}"]) + " |")
    if "extrasphere" in med:
        notes = []
        for peer in ("qemu-nbd", "nbdkit"):
            if med.get(peer):
                better = sum(1 for e, p in zip(res["extrasphere"], res[peer]) if e["p99_us"] <= p["p99_us"])
                notes.append(f"- median p99 Extrasphere/{peer}: {med['extrasphere'] / med[peer]:.2f}x "
                             f"(lower is better); no worse in {better} of {rounds} rounds")
        out += [""] + notes
    return out


def tls_section(out_dir, servers, workloads):
    """The TLS rows: fio over TCP on 127.0.0.1 per server, with the ratio Extrasphere-TLS/qemu-nbd-TLS
    and, for the cost of TLS, TLS/plain TCP of each server."""
    if not servers:
        return []
    res = {}
    for w in workloads:
        for s in servers:
            res[(w, s)] = summarize(load(os.path.join(out_dir, "fio", f"{w}.{s}.json")))
    out = ["", "### NBD over TCP (127.0.0.1): TLS and plain, same fio jobs", "",
           "- the same certificates for both servers: the daemon's CA and server certificate, a client "
           "certificate from `extrasphere client add`; the daemon runs with --nbd-insecure so one "
           "listener serves both the TLS and the plain rows", ""]
    head = ["workload"]
    for s in servers:
        head += [f"{s} IOPS", f"{s} p99 µs"]
    head += ["ES-TLS/qemu-nbd-TLS", "ES TLS/plain", "qemu-nbd TLS/plain"]
    out.append("| " + " | ".join(head) + " |")
    out.append("|" + "|".join(["---"] + ["--:"] * (len(head) - 1)) + "|")
    for w in workloads:
        row = [w]
        for s in servers:
            r = res[(w, s)]
            row += [fmt_iops(r["iops"]), f"{r['p99_us']:.0f}"]
        g = lambda s: res.get((w, s))
        row += [ratio(g("extrasphere-tls"), g("qemu-nbd-tls")), ratio(g("extrasphere-tls"), g("extrasphere-tcp")),
                ratio(g("qemu-nbd-tls"), g("qemu-nbd-tcp"))]
        out.append("| " + " | ".join(row) + " |")
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--size", required=True)
    ap.add_argument("--cache", required=True)
    ap.add_argument("--runtime", required=True)
    ap.add_argument("--ramp", required=True)
    ap.add_argument("--servers", required=True)
    ap.add_argument("--workloads", required=True)
    ap.add_argument("--tls-servers", default="")
    ap.add_argument("--lat-rate", default="")
    ap.add_argument("--pin-rounds", type=int, default=0)
    a = ap.parse_args()
    servers = a.servers.split()
    workloads = a.workloads.split()

    res = {}
    for w in workloads:
        for s in servers:
            res[(w, s)] = summarize(load(os.path.join(a.out, "fio", f"{w}.{s}.json")))

    out = []
    out.append(f"### fio nbd engine, {a.size} raw file/volume, peers in cache={a.cache} mode")
    out.append("")
    env = os.path.join(a.out, "env.txt")
    if os.path.exists(env):
        with open(env, encoding="utf-8") as f:
            out.extend(f"- {line.rstrip()}" for line in f if line.strip())
    out.append(f"- each run: {a.ramp} s ramp, {a.runtime} s measured, one connection, unix socket; "
               "command: `make bench` (bench/nbd.sh)")
    out.append("")
    head = ["workload"]
    for s in servers:
        head += [f"{s} IOPS", f"{s} MiB/s", f"{s} p99 µs"]
    has_es = "extrasphere" in servers
    if has_es:
        head += ["ES/qemu-nbd", "ES/nbdkit"]
    out.append("| " + " | ".join(head) + " |")
    out.append("|" + "|".join(["---"] + ["--:"] * (len(head) - 1)) + "|")
    for w in workloads:
        row = [w]
        for s in servers:
            r = res[(w, s)]
            row += [fmt_iops(r["iops"]), f"{r['mib_s']:.0f}", f"{r['p99_us']:.0f}"]
        if has_es:
            es = res[(w, "extrasphere")]
            row += [ratio(es, res.get((w, "qemu-nbd"))), ratio(es, res.get((w, "nbdkit")))]
        out.append("| " + " | ".join(row) + " |")

    if a.lat_rate:
        out.extend(lat_section(a.out, servers, a.lat_rate))
    out.extend(pin_section(a.out, servers, a.pin_rounds))
    out.extend(tls_section(a.out, a.tls_servers.split(), workloads))

    rss = os.path.join(a.out, "rss.json")
    if os.path.exists(rss):
        with open(rss, encoding="utf-8") as f:
            r = json.load(f)
        out.append("")
        out.append("### Extrasphere daemon memory (VmRSS from /proc/PID/status)")
        out.append("")
        out.append("| state | RSS MiB |")
        out.append("|---|--:|")
        out.append(f"| just started, no volumes | {r['start_kib'] / 1024:.1f} |")
        out.append(f"| 10 volumes, {r['connections']} idle connections (one per volume) | "
                   f"{r['idle10_kib'] / 1024:.1f} |")
        out.append(f"| same + fio 4k randwrite QD8 on all 10 volumes | {r['load10_kib'] / 1024:.1f} |")
        out.append(f"| peak (VmHWM) | {r['hwm_kib'] / 1024:.1f} |")
    elif not has_es:
        out.append("")
        out.append("(Extrasphere skipped: EXTRASPHERE_SKIP=1)")
    print("\n".join(out))


if __name__ == "__main__":
    try:
        main()
    except (OSError, ValueError, KeyError) as e:
        print(f"bench/report.py: {e}", file=sys.stderr)
        sys.exit(1)
