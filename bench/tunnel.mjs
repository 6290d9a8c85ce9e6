#!/usr/bin/env node
// What does the SSH tunnel add to event delivery? Starts a real sshd on
// loopback (own host key, authorized_keys, known_hosts), runs
// `mnist-monitor remote train` against it, and connects two websocket viewers
// to the same run: one directly to the remote monitor's port, one through the
// tunnel. For every live batch event it records each viewer's arrival time
// and prints the latency from the event's creation (`ts_ms`) for both, and
// the extra the tunnel adds (tunnel arrival - direct arrival, same event).
//
//   node --experimental-websocket bench/tunnel.mjs [--bin PATH] [-- extra train flags]
//
// Needs /usr/sbin/sshd and ssh-keygen (openssh-server, openssh-client).
import { spawn, execFileSync } from 'node:child_process';
import { createServer } from 'node:net';
import { mkdtempSync, mkdirSync, writeFileSync, readFileSync, copyFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

const argv = process.argv.slice(2);
const dash = argv.indexOf('--');
const own = dash < 0 ? argv : argv.slice(0, dash);
const extra = dash < 0 ? [] : argv.slice(dash + 1);
const opt = (name, def) => { const i = own.indexOf(name); return i < 0 ? def : own[i + 1]; };
const bin = opt('--bin', join(process.env.CARGO_TARGET_DIR || 'target', 'release', 'mnist-monitor'));
if (typeof WebSocket === 'undefined') {
  console.error('needs a global WebSocket: run with node --experimental-websocket (Node 20) or Node >= 22');
  process.exit(2);
}
const freePort = () => new Promise((ok) => { const s = createServer(); s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => ok(port)); }); });

const dir = mkdtempSync(join(tmpdir(), 'mnist-bench-tunnel-'));
const keygen = (f) => execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', f]);
keygen(join(dir, 'host_ed25519'));
keygen(join(dir, 'client_ed25519'));
copyFileSync(join(dir, 'client_ed25519.pub'), join(dir, 'authorized_keys'));
mkdirSync('/run/sshd', { recursive: true });
const port = await freePort();
writeFileSync(join(dir, 'sshd_config'), [`Port ${port}`, 'ListenAddress 127.0.0.1', `HostKey ${dir}/host_ed25519`,
  `AuthorizedKeysFile ${dir}/authorized_keys`, `PidFile ${dir}/sshd.pid`, 'UsePAM no', 'StrictModes no',
  'PasswordAuthentication no', 'PermitRootLogin prohibit-password', 'AllowTcpForwarding yes', 'LogLevel ERROR', ''].join('\n'));
const sshd = spawn('/usr/sbin/sshd', ['-D', '-e', '-f', join(dir, 'sshd_config')], { stdio: 'ignore' });
await new Promise((ok) => setTimeout(ok, 500));
const [alg, key] = readFileSync(join(dir, 'host_ed25519.pub'), 'utf8').split(' ');
writeFileSync(join(dir, 'known_hosts'), `[127.0.0.1]:${port} ${alg} ${key}\n`);
mkdirSync(join(dir, 'home'), { recursive: true });

const trainArgs = ['--backend', 'cpu', '--epochs', '1', '--limit-train', '6000', '--limit-val', '500',
  '--limit-test', '500', '--batch-size', '32', '--data-dir', join(process.cwd(), 'datasets/mnist'), ...extra];
const child = spawn(bin, ['remote', 'train', `127.0.0.1:${port}`, '-i', join(dir, 'client_ed25519'),
  '--known-hosts', join(dir, 'known_hosts'), '--remote-bin', bin, '--remote-dir', join(dir, 'remote'), '--', ...trainArgs],
  { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, HOME: join(dir, 'home'), SSH_AUTH_SOCK: '' } });
const ports = await new Promise((ok, fail) => {
  createInterface({ input: child.stderr }).on('line', (l) => {
    const m = l.match(/^watch run \S+ at http:\/\/127\.0\.0\.1:(\d+)\/ \(tunnel to .*:127\.0\.0\.1:(\d+)\)/);
    if (m) ok({ local: Number(m[1]), remote: Number(m[2]) });
  });
  child.on('exit', (c) => fail(new Error(`remote train exited ${c} before the tunnel opened`)));
});

const arrivals = { direct: new Map(), tunnel: new Map() };
const lat = { direct: [], tunnel: [] };
function viewer(kind, p) {
  return new Promise((ok) => {
    const ws = new WebSocket(`ws://127.0.0.1:${p}/ws/runs/current`);
    let live = false;
    ws.onopen = () => ok(ws);
    ws.onmessage = (m) => {
      const now = performance.timeOrigin + performance.now();
      const e = JSON.parse(m.data);
      if (e.type === 'snapshot') { live = true; return; }
      if (live && e.type === 'batch') { arrivals[kind].set(e.seq, now); lat[kind].push(now - e.ts_ms); }
    };
  });
}
await viewer('direct', ports.remote);
await viewer('tunnel', ports.local);
const code = await new Promise((ok) => child.on('exit', ok));
sshd.kill('SIGKILL');
rmSync(dir, { recursive: true, force: true });

const pct = (xs, p) => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]; };
const extraMs = [];
for (const [seq, t] of arrivals.tunnel) if (arrivals.direct.has(seq)) extraMs.push(t - arrivals.direct.get(seq));
const f = (x) => x.toFixed(2);
console.log(`bin: ${bin}; remote train exited ${code}`);
console.log(`train: ${trainArgs.join(' ')}`);
console.log(`events: ${lat.direct.length} live batch events direct, ${lat.tunnel.length} through the tunnel`);
console.log(`latency from ts_ms, direct:  p50 ${f(pct(lat.direct, 50))} ms, p99 ${f(pct(lat.direct, 99))} ms`);
console.log(`latency from ts_ms, tunnel:  p50 ${f(pct(lat.tunnel, 50))} ms, p99 ${f(pct(lat.tunnel, 99))} ms`);
console.log(`extra the tunnel adds (same event): p50 ${f(pct(extraMs, 50))} ms, p99 ${f(pct(extraMs, 99))} ms, max ${f(Math.max(...extraMs))} ms`);
