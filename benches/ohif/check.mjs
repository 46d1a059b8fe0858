// Drives OHIF in headless Chromium against readhub: the study list must list the pushed
// studies, and the viewer must render each one (the viewport's pixels are read back from a
// screenshot), with no errors on the console.
//   node check.mjs BASE_URL SHOT_DIR NAME=STUDY_UID=PATIENT_ID...
import { chromium } from 'playwright-core';
import fs from 'node:fs';

const [base, shots, ...studies] = process.argv.slice(2);
fs.mkdirSync(shots, { recursive: true });
const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync',
    // WebGL through SwiftShader: there is no GPU here
    '--use-angle=swiftshader', '--enable-unsafe-swiftshader', '--ignore-gpu-blocklist'],
});
const page = await browser.newPage({ viewport: { width: 1600, height: 1000 } });
const problems = [];
page.on('console', (m) => { if (m.type() === 'error') problems.push(`console: ${m.text()}`); });
page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
page.on('response', (r) => {
  if (r.url().includes('/dicom-web/') && r.status() >= 400) problems.push(`HTTP ${r.status()} ${r.url()}`);
});

/** Mean and standard deviation of the luminance of a screenshot (decoded by the browser). */
async function stats(png) {
  return page.evaluate(async (b64) => {
    const img = new Image();
    img.src = 'data:image/png;base64,' + b64;
    await img.decode();
    const c = document.createElement('canvas');
    c.width = img.width; c.height = img.height;
    const g = c.getContext('2d');
    g.drawImage(img, 0, 0);
    const d = g.getImageData(0, 0, c.width, c.height).data;
    let n = 0, s = 0, s2 = 0;
    for (let i = 0; i < d.length; i += 4) {
      const y = 0.299 * d[i] + 0.587 * d[i + 1] + 0.114 * d[i + 2];
      n++; s += y; s2 += y * y;
    }
    const mean = s / n;
    return { mean, std: Math.sqrt(s2 / n - mean * mean) };
  }, png.toString('base64'));
}

const t0 = Date.now();
await page.goto(base + '/', { waitUntil: 'load' });
for (const spec of studies) {
  const [name, , patientId] = spec.split('=');
  // the study list shows each study as a row with its patient ID (MRN)
  await page.getByText(patientId, { exact: true }).first().waitFor({ timeout: 120000 })
    .catch(async () => {
      await page.screenshot({ path: `${shots}/study-list-failed.png` });
      console.error(problems.join('\n'));
      throw new Error(`study ${name} (patient ${patientId}) not in OHIF's study list`);
    });
}
await page.screenshot({ path: `${shots}/study-list.png` });
console.log(`study list: ${studies.length} studies shown after ${Date.now() - t0} ms`);

const results = {};
for (const spec of studies) {
  const [name, uid] = spec.split('=');
  const t1 = Date.now();
  await page.goto(`${base}/viewer?StudyInstanceUIDs=${uid}`, { waitUntil: 'load' });
  const canvas = page.locator('canvas.cornerstone-canvas, [data-viewport-uid] canvas').first();
  await canvas.waitFor({ state: 'visible', timeout: 120000 });
  let st = { mean: 0, std: 0 };
  for (let i = 0; i < 120; i++) {
    st = await stats(await canvas.screenshot());
    if (st.std > 12) break;
    await page.waitForTimeout(1000);
  }
  await page.screenshot({ path: `${shots}/viewer-${name}.png` });
  results[name] = { ...st, ms: Date.now() - t1 };
  console.log(`${name}: viewport luminance mean ${st.mean.toFixed(1)} std ${st.std.toFixed(1)} after ${Date.now() - t1} ms`);
  if (st.std <= 12) problems.push(`${name}: the viewport stayed blank (luminance std ${st.std.toFixed(1)})`);
}
await browser.close();
fs.writeFileSync(`${shots}/result.json`, JSON.stringify({ results, problems }, null, 2));
if (problems.length) {
  console.error('OHIF conformance FAILED:\n  ' + problems.join('\n  '));
  process.exit(1);
}
console.log('OHIF conformance passed: study list and rendering, no console errors');
