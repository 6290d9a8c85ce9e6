#!/usr/bin/env python3
"""The HTTP and /proc measurements of bench/many_runs/run.sh, one
subcommand each; every figure is printed as a `name: value unit` line.

    measure.py ready   --url URL --runs N --t0-ns NS --pid PID
    measure.py pages   --url URL
    measure.py filters --url URL
    measure.py compare --url URL
    measure.py rss     --pid PID
    measure.py idle    --pid PID [--seconds 20]
    measure.py newrun  --url URL --runs-dir DIR --id-file FILE
    measure.py summary --results FILE

`GET /api/runs?…` answers {"total", "all", "offset", "limit", "runs": [...]};
a server that still answers a bare array (before the run index) is measured
too, with total = the array's length (and a note: it ignores q and limit).
Python 3 standard library only; loopback only; every wait bounded.
"""

import argparse
import concurrent.futures
import http.client
import json
import os
import random
import shutil
import statistics
import sys
import time
import urllib.parse

FILTERS = ["acc>0.99 lr<=0.001", "status:completed tag:keep"]

# name -> (goal as text, limit or None, unit of the limit)
GOALS = {
    "generating the runs": ("(setup)", None),
    "log bytes": ("", None),
    "reading the logs once": ("reference (warm cache)", None),
    "index rebuild": ("about one parse of the logs", None),
    "index rebuild / reading once": ("reported", None),
    "serve start with an index": ("<= 2 s", 2.0),
    "first page": ("", None),
    "warm page": ("<= 50 ms", 50.0),
    "filter over all runs (acc>0.99 lr<=0.001)": ("<= 100 ms", 100.0),
    "filter over all runs (status:completed tag:keep)": ("<= 100 ms", 100.0),
    "page open to a filled Runs table": ("<= 1500 ms", 1500.0),
    "compare of 20 runs": ("<= 1000 ms", 1000.0),
    "server RSS": ("<= 300 MB", 300.0),
    "idle CPU": ("<= 1 %", 1.0),
    "a new run appears": ("<= 1000 ms", 1000.0),
}


def say(name, value, unit):
    print(f"{name}: {value} {unit}", flush=True)


def note(text):
    """A detail under the figure before it (the summary skips these lines)."""
    print(f"  ({text})", flush=True)


def get(url, path, timeout=30.0):
    """(status, body, ms) of one GET on a fresh connection."""
    u = urllib.parse.urlsplit(url)
    t0 = time.perf_counter()
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Accept": "application/json"})
        r = conn.getresponse()
        body = r.read()
        return r.status, body, (time.perf_counter() - t0) * 1000
    finally:
        conn.close()


def listing(body):
    """(total, runs) of a GET /api/runs answer, either shape."""
    doc = json.loads(body)
    if isinstance(doc, list):
        return len(doc), doc, True
    return doc.get("total"), doc.get("runs", []), False


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def runs_path(q=None, limit=50):
    qs = {"limit": str(limit)}
    if q is not None:
        qs = {"q": q, **qs}
    return "/api/runs?" + urllib.parse.urlencode(qs, quote_via=urllib.parse.quote)


def cmd_ready(a):
    """Time from the server's start to /api/runs?limit=50 answering total == N."""
    deadline = time.time() + a.timeout
    first = None
    last_total = None
    while time.time() < deadline:
        if not alive(a.pid):
            sys.exit("the server exited before it answered (see its log)")
        try:
            status, body, ms = get(a.url, runs_path(), timeout=max(1.0, deadline - time.time()))
        except (ConnectionError, OSError, http.client.HTTPException):
            time.sleep(0.01)
            continue
        if status == 200:
            total, runs, old = listing(body)
            last_total = total
            if first is None:
                first = (ms, total, len(body), old)
            if total == a.runs:
                elapsed = (time.time_ns() - a.t0_ns) / 1e9
                say("serve start with an index", f"{elapsed:.3f}", "s")
                say("first page", f"{first[0]:.1f}", "ms")
                note(f"first answer: total {first[1]}, {first[2]} bytes"
                     + ("; this server answers a bare array: no run index yet" if first[3] else ""))
                return
        time.sleep(0.02)
    if first:
        say("first page", f"{first[0]:.1f}", "ms")
    say("serve start with an index", "n/a", f"(total {last_total}, not {a.runs}, after {a.timeout:.0f} s)")
    sys.exit(1)


def median_ms(url, path, n):
    times = []
    body = b""
    for _ in range(n):
        status, body, ms = get(url, path)
        if status != 200:
            raise SystemExit(f"GET {path}: HTTP {status}: {body[:200]!r}")
        times.append(ms)
    return statistics.median(times), body, times


def cmd_pages(a):
    med, body, times = median_ms(a.url, runs_path(), 20)
    say("warm page", f"{med:.1f}", "ms")
    total, runs, _ = listing(body)
    note(f"20 GETs of {runs_path()}: min {min(times):.1f}, max {max(times):.1f} ms; "
         f"{len(body)} bytes, {len(runs)} runs of {total}")


def cmd_filters(a):
    for q in FILTERS:
        path = runs_path(q)
        med, body, times = median_ms(a.url, path, 10)
        say(f"filter over all runs ({q})", f"{med:.1f}", "ms")
        total, runs, old = listing(body)
        note(f"{path}: {total} match, min {min(times):.1f}, max {max(times):.1f} ms"
             + ("; a bare array: this server ignores q" if old else ""))


def cmd_compare(a):
    status, body, _ = get(a.url, runs_path())
    if status != 200:
        sys.exit(f"GET {runs_path()}: HTTP {status}")
    _, runs, _ = listing(body)
    ids = [r["run_id"] for r in runs if r.get("steps", 1)][:20]
    if len(ids) < 20:
        note(f"only {len(ids)} runs on the first page")

    def one(rid):
        return get(a.url, f"/api/runs/{urllib.parse.quote(rid)}/series?points=600", timeout=60)

    t0 = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(len(ids) or 1) as pool:
        results = list(pool.map(one, ids))
    wall = (time.perf_counter() - t0) * 1000
    bad = [(rid, s) for rid, (s, _, _) in zip(ids, results) if s != 200]
    if bad:
        say("compare of 20 runs", "n/a", f"(HTTP {bad[0][1]} for {bad[0][0]})")
        sys.exit(1)
    say("compare of 20 runs", f"{wall:.0f}", "ms")
    note(f"{len(ids)} series at once, {sum(len(b) for _, b, _ in results)} bytes, slowest "
         f"{max(ms for _, _, ms in results):.0f} ms")


def proc_times(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(") ", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime (fields 14, 15)


def cmd_rss(a):
    with open(f"/proc/{a.pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                say("server RSS", f"{int(line.split()[1]) / 1024:.0f}", "MB")
                return
    sys.exit("no VmRSS")


def cmd_idle(a):
    hz = os.sysconf("SC_CLK_TCK")
    c0, t0 = proc_times(a.pid), time.monotonic()
    time.sleep(a.seconds)
    c1, t1 = proc_times(a.pid), time.monotonic()
    say("idle CPU", f"{(c1 - c0) / hz / (t1 - t0) * 100:.2f}", "%")
    note(f"{(c1 - c0) / hz:.2f} s of CPU over {t1 - t0:.1f} s with no client")


def cmd_newrun(a):
    runs = a.runs_dir
    ids = sorted(d for d in os.listdir(runs) if not d.startswith(".") and
                 os.path.exists(os.path.join(runs, d, "events.jsonl")))
    # A completed run (its log ends with run_finished) to copy.
    src = None
    for rid in ids:
        with open(os.path.join(runs, rid, "events.jsonl"), "rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - 600))
            if b'"type":"run_finished","status":"completed"' in f.read():
                src = rid
                break
    src = src or ids[0]
    while True:  # a fresh id, as the trainer makes them: sorts after every other
        new = time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-%04x" % random.getrandbits(16)
        if not os.path.exists(os.path.join(runs, new)):
            break
    with open(a.id_file, "w") as f:
        f.write(new + "\n")
    with open(os.path.join(runs, src, "events.jsonl"), "rb") as f:
        data = f.read().replace(b'"run_id":"%s"' % src.encode(), b'"run_id":"%s"' % new.encode())
    folder = os.path.join(runs, new)
    os.mkdir(folder)
    if os.path.exists(os.path.join(runs, src, "meta.json")):
        shutil.copy(os.path.join(runs, src, "meta.json"), os.path.join(folder, "meta.json"))
    tmp = os.path.join(folder, ".events.jsonl.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    path = runs_path(new, 1)
    t0 = time.perf_counter()
    os.rename(tmp, os.path.join(folder, "events.jsonl"))
    deadline = t0 + a.timeout
    polls = 0
    while time.perf_counter() < deadline:
        status, body, _ = get(a.url, path)
        polls += 1
        if status == 200:
            total, found, old = listing(body)
            hit = any(r.get("run_id") == new for r in found) if old else total == 1
            if hit:
                say("a new run appears", f"{(time.perf_counter() - t0) * 1000:.0f}", "ms")
                note(f"{new} (a copy of {src}, {len(data)} bytes) after {polls} polls of {path}")
                return
        time.sleep(0.01)
    say("a new run appears", "n/a", f"(not listed after {a.timeout:.0f} s)")
    sys.exit(1)


def cmd_summary(a):
    got = {}
    with open(a.results) as f:
        for line in f:
            if line.startswith(" "):
                continue
            name, sep, rest = line.rstrip("\n").rpartition(": ")
            if sep and name:
                got[name] = rest
    rows = []
    for name, (goal, limit) in GOALS.items():
        if name not in got:
            continue
        value = got[name]
        verdict = ""
        if limit is not None:
            try:
                verdict = "ok" if float(value.split()[0]) <= limit else "OVER"
            except ValueError:
                verdict = "n/a"
        rows.append((name, value, goal, verdict))
    for name in got:
        if name not in GOALS:
            rows.append((name, got[name], "", ""))
    w = [max(len(r[i]) for r in rows + [("figure", "value", "goal", "")]) for i in range(4)]
    print()
    print(f"| {'figure':<{w[0]}} | {'value':>{w[1]}} | {'goal':<{w[2]}} | {'':<{w[3]}} |")
    print(f"| {'-' * w[0]} | {'-' * w[1]} | {'-' * w[2]} | {'-' * w[3]} |")
    for r in rows:
        print(f"| {r[0]:<{w[0]}} | {r[1]:>{w[1]}} | {r[2]:<{w[2]}} | {r[3]:<{w[3]}} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("ready")
    p.add_argument("--url", required=True)
    p.add_argument("--runs", type=int, required=True)
    p.add_argument("--t0-ns", type=int, required=True)
    p.add_argument("--pid", type=int, required=True)
    p.add_argument("--timeout", type=float, default=300)
    for name in ("pages", "filters", "compare"):
        sub.add_parser(name).add_argument("--url", required=True)
    sub.add_parser("rss").add_argument("--pid", type=int, required=True)
    p = sub.add_parser("idle")
    p.add_argument("--pid", type=int, required=True)
    p.add_argument("--seconds", type=float, default=20)
    p = sub.add_parser("newrun")
    p.add_argument("--url", required=True)
    p.add_argument("--runs-dir", required=True)
    p.add_argument("--id-file", required=True)
    p.add_argument("--timeout", type=float, default=30)
    sub.add_parser("summary").add_argument("--results", required=True)
    a = ap.parse_args()
    globals()["cmd_" + a.cmd](a)


if __name__ == "__main__":
    main()
