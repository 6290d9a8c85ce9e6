#!/usr/bin/env node
// Does watching slow training? Runs the same short training run with 0 and
// with N websocket viewers attached to `train --serve`, alternating, and
// prints the training throughput ratio (goal >= 0.99) and the latency from an
// event's creation (its `ts_ms`) to its arrival at a viewer (goal p99 <= 50 ms).
//
//   node --experimental-websocket bench/viewers.mjs [--viewers 20] [--rounds 3]
//        [--bin PATH] [-- extra train flags]
//
// Viewers run in this Node process, on the same machine, as browsers on a
// laptop would not: the ratio is a pessimistic one.
import { spawn } from "node:child_process";
import { createServer } from "node:net";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const argv = process.argv.slice(2);
const dash = argv.indexOf("--");
const own = dash < 0 ? argv : argv.slice(0, dash);
const extra = dash < 0 ? [] : argv.slice(dash + 1);
const opt = (name, def) => {
  const i = own.indexOf(name);
  return i < 0 ? def : own[i + 1];
};
const viewers = Number(opt("--viewers", 20));
const rounds = Number(opt("--rounds", 3));
const target = process.env.CARGO_TARGET_DIR || "target";
const bin = opt("--bin", join(target, "release", "mnist-monitor"));
const trainArgs = [
  "--epochs", "1", "--limit-train", "6000", "--limit-val", "500", "--limit-test", "500",
  "--batch-size", "32", "--backend", "cpu", "--keep-checkpoints", "1",
  ...extra,
];

if (typeof WebSocket === "undefined") {
  console.error("needs a global WebSocket: run with node --experimental-websocket (Node 20) or Node >= 22");
  process.exit(2);
}

function freePort() {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

function connectViewer(port, lat) {
  return new Promise((resolve) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/ws/runs/current`);
    let live = false;
    const v = { ws, events: 0, lastSeq: 0, gaps: 0 };
    ws.onopen = () => resolve(v);
    ws.onerror = () => resolve(null);
    ws.onmessage = (m) => {
      const now = Date.now();
      const ev = JSON.parse(m.data);
      if (ev.type === "snapshot" || ev.type === "run_changed") {
        live = true; // everything after the snapshot is live
        v.lastSeq = ev.last_seq ?? v.lastSeq;
        return;
      }
      if (ev.seq === undefined) return;
      if (v.lastSeq && ev.seq !== v.lastSeq + 1) v.gaps++;
      v.lastSeq = ev.seq;
      v.events++;
      if (live && ev.type === "batch") lat.push(now - ev.ts_ms);
    };
  });
}

async function oneRun(nViewers) {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), "mnist-bench-viewers-"));
  const child = spawn(bin, [
    "train", "--serve", `127.0.0.1:${port}`, "--json", "--quiet",
    "--run-dir", join(dir, "runs"), "--checkpoint-dir", join(dir, "ckpt"),
    ...trainArgs,
  ], { stdio: ["ignore", "pipe", "pipe"] });
  let out = "", err = "";
  child.stdout.on("data", (d) => (out += d));
  const lat = [];
  const serving = new Promise((resolve) => {
    child.stderr.on("data", (d) => {
      err += d;
      if (err.includes("serving on")) resolve();
    });
  });
  const done = new Promise((resolve) => child.on("exit", resolve));
  await Promise.race([serving, done]);
  const vs = [];
  for (let i = 0; i < nViewers; i++) vs.push(await connectViewer(port, lat));
  const code = await done;
  rmSync(dir, { recursive: true, force: true });
  if (code !== 0) throw new Error(`train exited ${code}: ${err.slice(-2000)}`);
  const summary = JSON.parse(out.trim().split("\n").pop());
  const connected = vs.filter(Boolean);
  return {
    ips: summary.images_per_sec,
    lat,
    connected: connected.length,
    events: connected.reduce((a, v) => a + v.events, 0),
    gaps: connected.reduce((a, v) => a + v.gaps, 0),
  };
}

const pct = (xs, p) => {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
};
const median = (xs) => pct(xs, 50);

console.log(`bin: ${bin}`);
console.log(`train: ${trainArgs.join(" ")}`);
const base = [], watched = [], lat = [];
let gaps = 0;
for (let r = 0; r < rounds; r++) {
  // Alternate so that drift (thermal, other load) hits both sides alike.
  const a = await oneRun(0);
  const b = await oneRun(viewers);
  base.push(a.ips);
  watched.push(b.ips);
  lat.push(...b.lat);
  gaps += b.gaps;
  console.log(
    `round ${r + 1}: 0 viewers ${a.ips.toFixed(1)} img/s | ${b.connected} viewers ${b.ips.toFixed(1)} img/s, ` +
      `${b.events} events delivered, ${b.gaps} gaps`,
  );
}
const ratio = median(watched) / median(base);
console.log(`throughput, median img/s: 0 viewers ${median(base).toFixed(1)}, ${viewers} viewers ${median(watched).toFixed(1)}`);
console.log(`ratio ${viewers} viewers / 0 viewers: ${ratio.toFixed(3)} (goal >= 0.99)`);
console.log(
  `event-to-viewer latency over ${lat.length} live batch deliveries: p50 ${pct(lat, 50)} ms, p99 ${pct(lat, 99)} ms, max ${Math.max(...lat)} ms (goal p99 <= 50 ms)`,
);
console.log(`sequence gaps seen by viewers: ${gaps}`);
