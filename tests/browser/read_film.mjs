// A reader reads a film in the web viewer, the site's referrer sees the report, another
// site's referrer does not. Driven by tests/e2e.rs (browser_reads_a_film) against a real
// readhub; Debian's Chromium, headless.
//   node read_film.mjs BASE_URL SHOT_DIR READER:PW REFERRER_A:PW REFERRER_B:PW IMPRESSION
import { chromium } from 'playwright-core';
import fs from 'node:fs';

const [base, shots, reader, refA, refB, impression] = process.argv.slice(2);
fs.mkdirSync(shots, { recursive: true });
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--disable-gpu'],
});
const problems = [];
const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
page.on('console', (m) => { if (m.type() === 'error') problems.push(`console: ${m.text()}`); });
page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
const step = (what) => console.log(`ok   ${what}`);

async function login(cred) {
  const [user, pw] = cred.split(':');
  // a fresh start: no session cookie, so the page boots into its login form
  await page.context().clearCookies();
  await page.goto(base + '/');
  await page.waitForSelector('form.login input[name=username]');
  await page.fill('input[name=username]', user);
  await page.fill('input[name=password]', pw);
  await page.click('form.login button[type=submit]');
  await page.waitForSelector('#who:not(:empty)');
}

/** Mean and standard deviation of the canvas's luminance. */
const canvasStats = () => page.evaluate(() => {
  const c = document.querySelector('canvas.image');
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let n = 0, s = 0, s2 = 0;
  for (let i = 0; i < d.length; i += 4 * 7) { n++; s += d[i]; s2 += d[i] * d[i]; }
  const mean = s / n;
  return { mean, std: Math.sqrt(s2 / n - mean * mean), w: c.width, h: c.height };
});

try {
  // the reader: worklist, claim next with the keyboard, the image, window/level, sign
  await login(reader);
  await page.waitForSelector('table.worklist tr[data-item]');
  const row = page.locator('table.worklist tr[data-item]').first();
  if (!(await row.getAttribute('class')).includes('prio-')) throw new Error('worklist rows carry no priority colour');
  await page.screenshot({ path: `${shots}/1-worklist.png` });
  step('the pushed film is on the reader\'s worklist');
  await page.keyboard.press('n');
  await page.waitForSelector('canvas.image[data-state=pixels]', { timeout: 60000 });
  const before = await canvasStats();
  if (before.std < 10) throw new Error(`the image is blank: ${JSON.stringify(before)}`);
  step(`claimed with N; the film renders ${before.w}x${before.h} (luminance mean ${before.mean.toFixed(1)}, sd ${before.std.toFixed(1)})`);
  const box = await page.locator('canvas.image').boundingBox();
  await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
  await page.mouse.down();
  await page.mouse.move(box.x + box.width / 2 + 150, box.y + box.height / 2 + 80, { steps: 5 });
  await page.mouse.up();
  await page.waitForTimeout(300);
  const after = await canvasStats();
  if (Math.abs(after.mean - before.mean) < 2 && Math.abs(after.std - before.std) < 2) {
    throw new Error(`window/level drag changed nothing: ${JSON.stringify({ before, after })}`);
  }
  step(`a window/level drag changes the pixels (mean ${before.mean.toFixed(1)} -> ${after.mean.toFixed(1)})`);
  await page.fill('textarea[name=impression]', impression);
  await page.click('#sign');
  await page.waitForFunction(() => ['已签发', 'Signed'].includes(document.querySelector('#report-status')?.textContent));
  await page.screenshot({ path: `${shots}/2-reading.png` });
  step('the reader signs the report');

  // the referrer of the site: the report, and its print page
  await login(refA);
  await page.waitForSelector('table.reports td.impression');
  const text = await page.locator('table.reports').innerText();
  if (!text.includes(impression)) throw new Error(`referrer A's list lacks the report: ${text}`);
  await page.screenshot({ path: `${shots}/3-referrer.png` });
  const [print] = await Promise.all([page.waitForEvent('popup'), page.click('table.reports a')]);
  await print.waitForLoadState();
  if (!(await print.content()).includes(impression)) throw new Error('the print page lacks the impression');
  await print.screenshot({ path: `${shots}/4-print.png` });
  await print.close();
  step('the referrer of the site sees and prints it');

  // another site's referrer sees nothing
  await login(refB);
  await page.waitForSelector('section h2');
  if ((await page.content()).includes(impression)) throw new Error('referrer B sees site A\'s report');
  await page.screenshot({ path: `${shots}/5-other-site.png` });
  step('the referrer of another site does not');
} catch (e) {
  await page.screenshot({ path: `${shots}/failed.png` }).catch(() => {});
  problems.push(String(e.stack || e));
}
await browser.close();
if (problems.length) {
  console.error('FAILED:\n  ' + problems.join('\n  '));
  process.exit(1);
}
