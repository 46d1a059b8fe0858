// What every browser test shares: Debian's Chromium (headless, never a downloaded browser),
// one page that collects console errors and page errors as problems, the step and
// screenshot helpers, and logging in from a fresh start.
import { chromium } from 'playwright-core';
import fs from 'node:fs';

export async function open(cfg, { width = 1400, height = 900, fullPage = false } = {}) {
  fs.mkdirSync(cfg.shots, { recursive: true });
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--disable-gpu'],
  });
  const problems = [];
  const page = await browser.newPage({ viewport: { width, height } });
  page.on('console', (m) => { if (m.type() === 'error' && !/status of (40[349]|422)/.test(m.text())) problems.push(`console: ${m.text()}`); });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  const step = (what) => console.log(`ok   ${what}`);
  const shot = (name) => page.screenshot({ path: `${cfg.shots}/${name}.png`, fullPage });
  async function login([user, pw]) {
    // a fresh start: no session cookie, so the page boots into its login form
    await page.context().clearCookies();
    await page.goto(cfg.base + '/');
    await page.waitForSelector('form.login input[name=username]');
    await page.fill('input[name=username]', user);
    await page.fill('input[name=password]', pw);
    await page.click('form.login button[type=submit]');
    await page.waitForSelector('#who:not(:empty)');
  }
  return { browser, page, problems, step, shot, login };
}
