// Full-fidelity frames in JPEG-LS lossless, decoded in Chromium by the viewer's WebAssembly
// codec (CharLS from npm, served by readhub): the film on the canvas is pixel for pixel the
// film the native path shows. Config: JSON file (argv[2]) from tests/e2e/web_viewer.rs.
import fs from 'node:fs';
import crypto from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { open } from './harness.mjs';

const cfg = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const { browser, page, problems, step, shot, login } = await open(cfg);
const here = path.dirname(fileURLToPath(import.meta.url));

try {
  // the codec readhub serves is the npm package's, byte for byte
  for (const f of ['charlswasm_decode.js', 'charlswasm_decode.wasm']) {
    const r = await fetch(`${cfg.base}/app/${f}`);
    const served = Buffer.from(await r.arrayBuffer());
    const npm = fs.readFileSync(path.join(here, 'node_modules/@cornerstonejs/codec-charls/dist', f));
    if (!served.equals(npm)) throw new Error(`${f} served by readhub is not @cornerstonejs/codec-charls's`);
  }
  step('the JPEG-LS codec readhub serves is @cornerstonejs/codec-charls from npm, byte for byte');

  // which syntax each frame arrived in (from the part's own Content-Type)
  const seen = [];
  page.on('response', async (r) => {
    if (!/\/frames\/\d+$/.test(new URL(r.url()).pathname)) return;
    const head = (await r.body().catch(() => Buffer.alloc(0))).subarray(0, 400).toString('latin1');
    seen.push(/transfer-syntax=([0-9.]+)/.exec(head)?.[1] ?? '?');
  });
  const pixels = () => page.evaluate(() => {
    const c = document.querySelector('.viewport:not(.prior) canvas.image');
    return { w: c.width, h: c.height, data: Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data) };
  });
  const digest = (p) => crypto.createHash('sha256').update(Uint8Array.from(p.data)).digest('hex');

  await login(cfg.reader);
  await page.waitForSelector('table.worklist tr[data-item]');
  await page.keyboard.press('n');
  await page.waitForSelector('.viewport canvas.image[data-state=pixels]', { timeout: 60000 });
  await page.waitForTimeout(300);
  const compressed = await pixels();
  if (seen[0] !== '1.2.840.10008.1.2.4.80') throw new Error(`the frame came as ${seen[0]}, not JPEG-LS`);
  await shot('lossless-jpegls');

  // the same film on the native path (the viewer told not to ask for JPEG-LS)
  await page.evaluate(() => localStorage.setItem('readhub.frames', 'native'));
  await page.goto(cfg.base + '/');
  await page.waitForSelector('table.worklist tr[data-item] button');
  await page.click('table.worklist tr[data-item] button');
  await page.waitForSelector('.viewport canvas.image[data-state=pixels]', { timeout: 60000 });
  await page.waitForTimeout(300);
  const native = await pixels();
  if (seen[seen.length - 1] !== '1.2.840.10008.1.2.1') throw new Error(`the native path got ${seen[seen.length - 1]}`);
  await page.evaluate(() => localStorage.removeItem('readhub.frames'));
  if (compressed.w !== native.w || compressed.h !== native.h) throw new Error(`canvas sizes differ: ${compressed.w}x${compressed.h} vs ${native.w}x${native.h}`);
  const distinct = new Set(native.data.filter((_, i) => i % 4 === 0)).size;
  if (distinct < 50) throw new Error(`the canvas shows too little of the film (${distinct} grey levels)`);
  if (digest(compressed) !== digest(native)) {
    const diff = compressed.data.findIndex((v, i) => v !== native.data[i]);
    throw new Error(`the JPEG-LS path's canvas differs from the native path's at byte ${diff}`);
  }
  step(`a CR's frame came as JPEG-LS lossless, decoded in the browser: its ${native.w}×${native.h} canvas (${distinct} grey levels) is identical to the native path's`);
  if (problems.length) throw new Error(problems.join('\n'));
} finally {
  await browser.close();
}
