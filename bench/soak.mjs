#!/usr/bin/env node
// Soak: a long run under abuse, nothing lost.
//
//   node --experimental-websocket bench/soak.mjs [--minutes 30] [--viewers 50]
//        [--bin PATH] [--data datasets/mnist]
//
// One `train --serve` run on real MNIST, and around it for --minutes:
// --viewers websocket viewers connecting and leaving at random, a PNG
// decompression bomb posted every 3 s, /api/health asked every 100 ms, and
// halfway a `kill -9` of the process followed by `--resume` on the same port.
// An auditor viewer follows the run across the kill with ?since=SEQ.
// Prints: health latency (p50, p99, max, over 100 ms) outside the restart,
// the restart gap, and whether the auditor saw every seq exactly once and,
// after the resume marker, one batch per step. Exits 1 when something was lost.
import { spawn } from "node:child_process";
import { createServer } from "node:net";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { deflateSync, crc32 } from "node:zlib";

const argv = process.argv.slice(2);
const opt = (name, def) => {
  const i = argv.indexOf(name);
  return i < 0 ? def : argv[i + 1];
};
const minutes = Number(opt("--minutes", 30));
const nViewers = Number(opt("--viewers", 50));
const target = process.env.CARGO_TARGET_DIR || "target";
const bin = opt("--bin", join(target, "release", "mnist-monitor"));
const data = opt("--data", "datasets/mnist");
const work = mkdtempSync(join(tmpdir(), "mnist-soak-"));
const runId = "soak";

const freePort = () =>
  new Promise((ok) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => {
      const p = s.address().port;
      s.close(() => ok(p));
    });
  });
const port = await freePort();
const base = `http://127.0.0.1:${port}`;
const sleep = (ms) => new Promise((ok) => setTimeout(ok, ms));

function start(resume) {
  const args = ["train", "--serve", `127.0.0.1:${port}`, "--data-dir", data, "--backend", "cpu",
    "--run-dir", join(work, "runs"), "--checkpoint-dir", join(work, "ckpt"), "--quiet"];
  if (resume) args.push("--resume", runId);
  else args.push("--run-id", runId, "--epochs", "10000", "--limit-train", "4000", "--limit-test", "1000",
    "--kernels", "16,32,32,32", "--val-size", "1000");
  const child = spawn(bin, args, { stdio: ["ignore", "ignore", "pipe"] });
  child.stderr.on("data", () => {});
  return child;
}

async function waitServing() {
  for (;;) {
    try {
      const r = await fetch(`${base}/api/health`, { signal: AbortSignal.timeout(1000) });
      if (r.ok) return;
    } catch (_) { /* not yet */ }
    await sleep(50);
  }
}

// A PNG claiming 20000×20000 1-bit pixels, about 60 KB.
function pngBomb(side = 20000) {
  const chunk = (type, body) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(body.length);
    const tb = Buffer.concat([Buffer.from(type), body]);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(tb) >>> 0);
    return Buffer.concat([len, tb, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(side, 0);
  ihdr.writeUInt32BE(side, 4);
  ihdr.set([1, 0, 0, 0, 0], 8);
  const raw = Buffer.alloc((1 + Math.ceil(side / 8)) * side);
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk("IHDR", ihdr), chunk("IDAT", deflateSync(raw, { level: 9 })), chunk("IEND", Buffer.alloc(0))]);
}

let child = start(false);
await waitServing();
const t0 = Date.now();
const end = t0 + minutes * 60_000;
let restarting = null; // [from, to] of the kill/restart window
const health = [];
let healthFailed = 0;
let bombs = 0, bombsRefused = 0;
let connects = 0;

// The auditor: every event, across the kill, by ?since=.
const audit = { seqs: [], last: 0, batches: [] };
async function auditor() {
  while (Date.now() < end + 60_000 && !audit.finished) {
    await new Promise((done) => {
      const ws = new WebSocket(`${base.replace("http", "ws")}/ws/runs/${runId}?since=${audit.last}`);
      ws.onmessage = (m) => {
        const e = JSON.parse(m.data);
        if (e.seq == null) return;
        audit.seqs.push(e.seq);
        audit.last = e.seq;
        audit.batches.push(e);
        if (e.type === "run_finished" && audit.stopping) audit.finished = true;
      };
      ws.onclose = done;
      ws.onerror = () => {};
    });
    await sleep(200);
  }
}

async function viewer() {
  while (Date.now() < end) {
    await new Promise((done) => {
      connects++;
      const ws = new WebSocket(`${base.replace("http", "ws")}/ws/runs/current`);
      const stay = 500 + Math.random() * 10_000;
      const timer = setTimeout(() => ws.close(), stay);
      ws.onclose = () => { clearTimeout(timer); done(); };
      ws.onerror = () => {};
    });
    await sleep(Math.random() * 2000);
  }
}

async function pinger() {
  while (Date.now() < end) {
    const started = performance.now();
    try {
      const r = await fetch(`${base}/api/health`, { signal: AbortSignal.timeout(5000) });
      await r.text();
      const ms = performance.now() - started;
      if (!restarting || (restarting[1] && Date.now() > restarting[1] + 1000)) health.push(ms);
    } catch (_) {
      if (!restarting || (restarting[1] && Date.now() > restarting[1] + 1000)) healthFailed++;
    }
    await sleep(100);
  }
}

const bomb = pngBomb();
const bombBody = JSON.stringify({ png_base64: bomb.toString("base64") });
async function bomber() {
  while (Date.now() < end) {
    if (!restarting || restarting[1]) {
      try {
        bombs++;
        const r = await fetch(`${base}/api/predict`, { method: "POST", body: bombBody,
          headers: { "content-type": "application/json" }, signal: AbortSignal.timeout(10_000) });
        if (r.status === 400) bombsRefused++;
        await r.text();
      } catch (_) { /* restarting */ }
    }
    await sleep(3000);
  }
}

async function killer() {
  await sleep(minutes * 30_000);
  restarting = [Date.now(), null];
  child.kill("SIGKILL");
  await new Promise((ok) => child.once("exit", ok));
  child = start(true);
  await waitServing();
  restarting[1] = Date.now();
}

const auditing = auditor();
await Promise.all([pinger(), bomber(), killer(), ...Array.from({ length: nViewers }, viewer)]);
audit.stopping = true;
await fetch(`${base}/api/runs/${runId}/stop`, { method: "POST" });
await Promise.race([auditing, sleep(60_000)]);
child.kill("SIGTERM");

// One value per step after folding the resume markers (what every consumer does).
let cut = Infinity;
const superseded = new Set();
for (let i = audit.batches.length - 1; i >= 0; i--) {
  const e = audit.batches[i];
  if (e.type === "run_started" && e.resumed_from_step != null) cut = Math.min(cut, e.resumed_from_step);
  if ((e.type === "batch" || e.type === "eval" || e.type === "samples") && e.step > cut) superseded.add(e.seq);
}
const steps = audit.batches.filter((e) => e.type === "batch" && !superseded.has(e.seq)).map((e) => e.step);
const stepsOk = steps.every((s, i) => s === i + 1);
const seqOk = audit.seqs.every((s, i) => s === i + 1);

health.sort((a, b) => a - b);
const q = (p) => health[Math.min(health.length - 1, Math.floor(p * health.length))];
const result = {
  minutes,
  viewers: nViewers,
  viewer_connects: connects,
  health_requests: health.length,
  health_p50_ms: +q(0.5).toFixed(2),
  health_p99_ms: +q(0.99).toFixed(2),
  health_max_ms: +health[health.length - 1].toFixed(2),
  health_over_100ms: health.filter((x) => x > 100).length,
  health_failed_outside_restart: healthFailed,
  restart_gap_s: restarting && restarting[1] ? +((restarting[1] - restarting[0]) / 1000).toFixed(1) : null,
  bombs,
  bombs_refused_400: bombsRefused,
  events_seen: audit.seqs.length,
  seq_continuous: seqOk,
  steps: steps.length,
  one_value_per_step: stepsOk,
  superseded_events: superseded.size,
};
console.log(JSON.stringify(result, null, 2));
process.exit(seqOk && stepsOk && healthFailed === 0 ? 0 : 1);
