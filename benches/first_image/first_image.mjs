// Time to first image in the web viewer: a reader presses N on the worklist and the film
// opens. Measured in Debian's Chromium (headless, playwright-core) from the key press to
// (a) the rendered JPEG preview on the canvas and (b) the 16-bit samples windowed on the
// client. Each run uses a fresh browser context (nothing cached), then releases the item.
//   node first_image.mjs BASE USER PW RUNS [MBIT LATENCY_MS]
// MBIT: Chromium's network emulation (download and upload), e.g. 20 for a township line.
import { chromium } from 'playwright-core';

const [base, user, pw, runs = '3', mbit, latency = '20'] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run'],
});
const results = [];
for (let i = 0; i < Number(runs); i++) {
  const context = await browser.newContext({ viewport: { width: 1600, height: 1000 } });
  const page = await context.newPage();
  if (mbit) {
    const cdp = await context.newCDPSession(page);
    await cdp.send('Network.enable');
    await cdp.send('Network.emulateNetworkConditions', {
      offline: false, latency: Number(latency),
      downloadThroughput: (Number(mbit) * 1e6) / 8, uploadThroughput: (Number(mbit) * 1e6) / 8,
    });
  }
  await page.goto(base + '/');
  await page.fill('input[name=username]', user);
  await page.fill('input[name=password]', pw);
  await page.click('form.login button[type=submit]');
  await page.waitForSelector('table.worklist tr[data-item]');
  // record when the canvas changes state, in the page's own clock
  await page.evaluate(() => {
    window.__marks = {};
    new MutationObserver(() => {
      const c = document.querySelector('.viewport canvas.image');
      if (c && !window.__marks[c.dataset.state]) window.__marks[c.dataset.state] = performance.now();
    }).observe(document.body, { subtree: true, attributes: true, childList: true, attributeFilter: ['data-state'] });
  });
  const t0 = await page.evaluate(() => performance.now());
  await page.keyboard.press('n');
  await page.waitForSelector('.viewport canvas.image[data-state=pixels]', { timeout: 300000 });
  const marks = await page.evaluate(() => window.__marks);
  const bytes = await page.evaluate((t0) => performance.getEntriesByType('resource')
    .filter((e) => e.name.includes('/frames/') || e.name.includes('/rendered') || e.name.includes('charls'))
    .map((e) => ({ what: e.name.includes('/frames/') ? 'frame' : e.name.includes('charls') ? 'codec' : 'preview', transferred: e.transferSize, decoded: e.decodedBodySize, ms: Math.round(e.duration),
      from: Math.round(e.startTime - t0), to: Math.round(e.responseEnd - t0) })), t0);
  const r = {
    preview_ms: marks.preview ? Math.round(marks.preview - t0) : null,
    pixels_ms: Math.round(marks.pixels - t0),
    requests: bytes,
  };
  results.push(r);
  console.log(JSON.stringify(r));
  const id = await page.locator('[data-item]').first().getAttribute('data-item').catch(() => null);
  await page.evaluate(async () => {
    const items = await (await fetch('/api/worklist', { headers: { 'x-requested-with': 'readhub-viewer' } })).json();
    for (const it of items) if (it.state === 'claimed') await fetch(`/api/worklist/${it.id}/release`, { method: 'POST', headers: { 'x-requested-with': 'readhub-viewer' } });
  });
  void id;
  await context.close();
}
const med = (k) => { const v = results.map((r) => r[k]).filter((x) => x !== null).sort((a, b) => a - b); return v.length ? v[Math.floor(v.length / 2)] : null; };
console.log(`SUMMARY ${mbit ? `${mbit} Mbit/s, ${latency} ms` : 'loopback'}: preview median ${med('preview_ms')} ms, 16-bit pixels median ${med('pixels_ms')} ms (${results.length} runs)`);
await browser.close();
