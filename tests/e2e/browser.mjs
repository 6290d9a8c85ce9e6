// What the end-to-end scripts share: headless Debian Chromium driven by
// playwright-core (from web/node_modules), and failing with a message.
import { createRequire } from 'node:module';
const require = createRequire(new URL('../../web/package.json', import.meta.url));
const { chromium } = require('playwright-core');

/// Ends the script with exit code 1 and the reason on stderr.
export const fail = (msg) => { console.error(`FAIL: ${msg}`); process.exit(1); };

/// Chromium ($CHROMIUM or /usr/bin/chromium), quiet: no sandbox (CI runs
/// as root), no GPU, no background network of its own.
export function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
           '--disable-component-update', '--disable-sync'],
  });
}
