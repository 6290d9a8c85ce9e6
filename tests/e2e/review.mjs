// The review page in a real headless Chromium: relabels the most suspicious
// sample with the keyboard and draws a digit on the sandbox canvas.
// Usage: node tests/e2e/review.mjs URL SCREENSHOT.png; prints "relabelled N".
import { fail, launch } from './browser.mjs';

const [url, screenshot] = process.argv.slice(2);
const browser = await launch();
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 950 } });
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.goto(url, { waitUntil: 'load' });
  await page.waitForSelector('.cell', { timeout: 60000 });
  // Before anything is drawn the model's input is an empty (black) picture,
  // not a broken-image icon with its alt text.
  const blank = await page.evaluate(() => { const i = document.querySelector('#sb-input'); return i.complete && i.naturalWidth > 0; });
  if (!blank) fail('the sandbox shows a broken image before a digit is drawn');
  // The first cell has focus; "7" relabels it and moves on.
  const index = await page.getAttribute('.cell[data-i="0"]', 'data-index');
  await page.keyboard.press('7');
  await page.waitForFunction(() => document.querySelector('.cell[data-i="0"] .decision').textContent.includes('→ 7'), null, { timeout: 10000 });
  if (!(await page.$('.cell[data-i="1"].focus'))) fail('focus did not move on');
  if (!/reviewed [1-9]/.test(await page.textContent('#progress'))) fail('progress not updated');

  // Draw a vertical stroke: the model should see a centred 28×28 and answer.
  const box = await page.locator('#pad').boundingBox();
  await page.mouse.move(box.x + 140, box.y + 40);
  await page.mouse.down();
  for (let i = 0; i <= 20; i++) await page.mouse.move(box.x + 140, box.y + 40 + i * 10);
  await page.mouse.up();
  await page.waitForFunction(() => document.querySelectorAll('#bars .bar').length === 10, null, { timeout: 15000 });
  const src = await page.getAttribute('#sb-input', 'src');
  if (!src || !src.startsWith('data:image/png;base64,')) fail('no model input shown');
  const total = await page.evaluate(() => window.mnistReview.prediction.probs.reduce((a, b) => a + b, 0));
  if (Math.abs(total - 1) > 1e-3) fail(`probabilities sum to ${total}`);
  await page.screenshot({ path: screenshot });
  if (errors.length) fail(`page errors: ${errors.join('; ')}`);
  console.log(`relabelled ${index}`);
} finally {
  await browser.close();
}
