// The web viewer end to end, in Debian's Chromium (headless), against a real readhub that
// tests/e2e.rs (browser_reads_films_and_ecgs) has started and filled:
//   - the reader claims a pushed film with N, the pixels render and change on a
//     window/level drag, signs; then claims a CT of known Pixel Spacing and measures it;
//   - the ECG physician opens a synthetic 12-lead ECG of known rhythm (RR 800 ms): 12
//     labelled leads, and calipers between two R peaks read 800 ms / 75 bpm;
//   - the referrer of the site sees, prints and gets the PDF of the report; another site's
//     referrer sees nothing;
//   - the technician uploads a folder with one file that is not DICOM: exactly that one is
//     refused; flags a study STAT;
//   - the admin's turnaround dashboard.
// Screenshots of every screen go to SHOT_DIR.
//   node viewer.mjs CONFIG.json
import fs from 'node:fs';
import { open } from './harness.mjs';

const cfg = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const { base, shots } = cfg;
const { browser, page, problems, step, shot, login } = await open(cfg);

/** Mean and standard deviation of the main viewport's luminance. */
const canvasStats = () => page.evaluate(() => {
  const c = document.querySelector('.viewport:not(.prior) canvas.image');
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let n = 0, s = 0, s2 = 0;
  for (let i = 0; i < d.length; i += 4 * 7) { n++; s += d[i]; s2 += d[i] * d[i]; }
  const mean = s / n;
  return { mean, std: Math.sqrt(s2 / n - mean * mean), w: c.width, h: c.height };
});

async function drag(from, to) {
  await page.mouse.move(from.x, from.y);
  await page.mouse.down();
  await page.mouse.move(to.x, to.y, { steps: 8 });
  await page.mouse.up();
}

try {
  // ---- the reader: worklist, claim next with the keyboard, the image, window/level, sign
  await login(cfg.reader);
  await page.waitForSelector('table.worklist tr[data-item]');
  const row = page.locator('table.worklist tr[data-item]').first();
  if (!(await row.getAttribute('class')).includes('prio-')) throw new Error('worklist rows carry no priority colour');
  await shot('01-worklist');
  step('the pushed films are on the reader\'s worklist, coloured by priority');
  // CSRF: a page on another port of this host makes the browser POST with the reader's
  // cookie (fetch, then a form); the hub refuses both, nothing is claimed, no logout
  await page.goto(cfg.evil);
  await page.waitForURL((u) => u.toString().startsWith(cfg.base), { timeout: 15000 });
  const forged = await page.textContent('body');
  await page.goto(cfg.base + '/');
  await page.waitForSelector('table.worklist tr[data-item]');
  const states = await page.evaluate(async () => (await (await fetch('/api/worklist', { headers: { 'x-requested-with': 'readhub-viewer' } })).json()).map((i) => i.state));
  if (states.includes('claimed')) throw new Error(`a page of another origin claimed work as the reader: ${states}`);
  if (!forged.includes('403') && !forged.includes('拒绝')) throw new Error(`the forged form was not refused: ${forged.slice(0, 200)}`);
  step('a page on another port of this host cannot make the signed-in reader claim work or log out (403)');
  await page.keyboard.press('n');
  await page.waitForSelector('.viewport canvas.image[data-state=pixels]', { timeout: 60000 });
  const before = await canvasStats();
  if (before.std < 10) throw new Error(`the image is blank: ${JSON.stringify(before)}`);
  step(`claimed with N; the film renders (luminance mean ${before.mean.toFixed(1)}, sd ${before.std.toFixed(1)})`);
  const box = await page.locator('.viewport').first().boundingBox();
  const mid = { x: box.x + box.width / 2, y: box.y + box.height / 2 };
  await drag(mid, { x: mid.x + 150, y: mid.y + 80 });
  await page.waitForTimeout(300);
  const after = await canvasStats();
  if (Math.abs(after.mean - before.mean) < 2 && Math.abs(after.std - before.std) < 2) {
    throw new Error(`window/level drag changed nothing: ${JSON.stringify({ before, after })}`);
  }
  await page.keyboard.press('i');
  await page.waitForTimeout(200);
  const inverted = await canvasStats();
  if (Math.abs(inverted.mean - after.mean) < 5) throw new Error(`invert changed nothing: ${JSON.stringify({ after, inverted })}`);
  await page.keyboard.press('i');
  // this film's Pixel Spacing is 0\0: a length is in pixels, and says it is uncalibrated
  await page.keyboard.press('l');
  await drag({ x: mid.x - 100, y: mid.y }, { x: mid.x + 100, y: mid.y });
  const px = await page.locator('ul.measurements li[data-kind=length]').first().innerText();
  const pxBasis = await page.locator('ul.measurements li.basis').innerText();
  if (!/ px$/.test(px) || !/未校准|uncalibrated/.test(pxBasis)) throw new Error(`an uncalibrated length reads "${px}" (${pxBasis})`);
  await page.keyboard.press('w');
  step(`window/level drag and invert change the pixels (mean ${before.mean.toFixed(1)} -> ${after.mean.toFixed(1)} -> ${inverted.mean.toFixed(1)}); on this uncalibrated film a length reads ${px}`);
  const corners = await page.locator('.viewport .corner.tl').innerText();
  if (!corners.includes(cfg.filmPatientId)) throw new Error(`overlay lacks the patient ID: ${corners}`);
  // a critical result (危急值) flagged before signing: the site must acknowledge it
  await page.click('details.critical summary');
  await page.fill('input[name=critical-finding]', cfg.critical);
  await page.click('#flag-critical');
  await page.waitForFunction(() => ['已上报危急值', 'Critical result flagged'].includes(document.querySelector('#report-status')?.textContent));
  await page.fill('textarea[name=impression]', cfg.impression);
  await page.click('#sign');
  await page.waitForFunction(() => ['已签发', 'Signed'].includes(document.querySelector('#report-status')?.textContent));
  if (await page.locator('#sign').count()) throw new Error('the signed report still offers Sign');
  await shot('02-reading-signed');
  step('the reader signs the report; the editor turns read-only');

  // ---- a length measurement on a CT of known Pixel Spacing
  await page.click('text=/返回|Back/');
  await page.waitForSelector('table.worklist tr[data-item]');
  await page.keyboard.press('n');
  await page.waitForSelector('.viewport canvas.image[data-state=pixels]', { timeout: 60000 });
  await page.keyboard.press('l');
  const vp = await page.locator('.viewport').first().boundingBox();
  const { rows, cols, spacing } = cfg.ct;
  const scale = Math.min(vp.width / cols, vp.height / rows);
  const toScreen = (x, y) => ({ x: vp.x + vp.width / 2 + (x - cols / 2) * scale, y: vp.y + vp.height / 2 + (y - rows / 2) * scale });
  const [x1, x2, y] = [100, 400, 256];
  await drag(toScreen(x1, y), toScreen(x2, y));
  const m = await page.locator('ul.measurements li[data-kind=length]').first().innerText();
  const mm = Number(/([\d.]+) mm/.exec(m)?.[1]);
  const expected = (x2 - x1) * spacing;
  if (!(Math.abs(mm - expected) <= 1.0)) throw new Error(`length reads "${m}", expected ${expected.toFixed(1)} mm`);
  const basis = await page.locator('ul.measurements li.basis').innerText();
  if (!/Pixel Spacing/.test(basis) || /Imager/.test(basis)) throw new Error(`the measurement does not say its basis: ${basis}`);
  // an angle: one arm dragged to the vertex, the other placed with a click (a right angle)
  await page.keyboard.press('a');
  await drag(toScreen(256, 100), toScreen(256, 256));
  const end = toScreen(400, 256);
  await page.mouse.click(end.x, end.y);
  const angle = await page.locator('ul.measurements li[data-kind=angle]').first().innerText();
  const deg = Number(/([\d.]+)°/.exec(angle)?.[1]);
  if (!(Math.abs(deg - 90) <= 1)) throw new Error(`angle reads "${angle}", expected 90°`);
  // presets, rotation, zoom: the overlay says what the reader sees
  await page.keyboard.press('2');
  await page.waitForFunction(() => document.querySelector('.viewport .corner.bl').textContent.includes('W 350 L 50'));
  await page.keyboard.press('r');
  await page.waitForFunction(() => document.querySelector('.viewport .corner.bl').textContent.includes('90°'));
  const zoomBefore = await page.locator('.viewport .corner.bl').innerText();
  const c = { x: vp.x + vp.width * 0.3, y: vp.y + vp.height * 0.4 };
  await page.mouse.move(c.x, c.y);
  await page.keyboard.down('Control');
  await page.mouse.wheel(0, -300);
  await page.keyboard.up('Control');
  await page.waitForFunction((z) => document.querySelector('.viewport .corner.bl').innerText !== z, zoomBefore);
  const zoomAfter = await page.locator('.viewport .corner.bl').innerText();
  const pct = (txt) => Number(/(\d+)%/.exec(txt)?.[1]);
  if (!(pct(zoomAfter) > pct(zoomBefore))) throw new Error(`zoom did not grow: ${zoomBefore} -> ${zoomAfter}`);
  await shot('03-measurement');
  await page.keyboard.press('Escape');
  step(`a length measurement reads ${mm} mm (expected ${expected.toFixed(1)} mm, ${basis}); a right angle reads ${deg}°; the mediastinum preset, rotation and zoom (${pct(zoomBefore)}% -> ${pct(zoomAfter)}%) show in the overlay`);

  // ---- a CT series: slices scroll with the keys; the patient's prior study side by side
  await page.click('text=/返回|Back/');
  await page.waitForSelector('table.worklist tr[data-item]');
  await page.keyboard.press('n');
  await page.waitForSelector('.viewport canvas.image[data-state=pixels]', { timeout: 60000 });
  const slices = cfg.series.slices;
  await page.keyboard.press('ArrowDown');
  await page.waitForFunction((n) => document.querySelector('.viewport .corner.br')?.textContent.includes(`2/${n}`), slices);
  for (let k = 2; k < slices; k++) await page.keyboard.press('ArrowDown');
  await page.waitForFunction((n) => document.querySelector('.viewport .corner.br')?.textContent.includes(`${n}/${n}`), slices);
  await page.waitForSelector('.viewport canvas.image[data-state=pixels]');
  await page.click('#priors summary');
  await page.click('#priors button.compare');
  await page.waitForSelector('.viewport.prior canvas.image[data-state=pixels]', { timeout: 60000 });
  const priorSeries = await page.locator('.image-pane.prior .series-strip .series').count();
  if (priorSeries !== cfg.series.priorSeries) throw new Error(`the prior shows ${priorSeries} series, expected ${cfg.series.priorSeries}`);
  await shot('03b-series-and-prior');
  step(`the reader scrolls through ${slices} slices with the keys and opens the prior study (${priorSeries} series) side by side`);

  // ---- the ECG physician: 12 labelled leads, calipers between R peaks
  await login(cfg.ecgReader);
  await page.waitForSelector('table.worklist tr[data-item]');
  await page.keyboard.press('n');
  await page.waitForSelector('svg.ecg-paper g.lead[data-rhythm]', { timeout: 60000 });
  const labels = await page.locator('svg.ecg-paper g.lead text.lead-label').allTextContents();
  const want = ['I', 'II', 'III', 'aVR', 'aVL', 'aVF', 'V1', 'V2', 'V3', 'V4', 'V5', 'V6'];
  const missing = want.filter((l) => !labels.includes(l));
  if (missing.length) throw new Error(`leads missing: ${missing} (labels: ${labels})`);
  const device = await page.locator('.ecg-side table.measurements').innerText();
  if (!device.includes('424') || !/QTc/.test(device)) throw new Error(`the device's measurements are not shown: ${device}`);
  await page.keyboard.press('c');
  /** Screen points of two R peaks on a strip, from the paper geometry (speed in mm/s). */
  const peaks = (selector, speed) => page.evaluate(({ sel, mmPerS, t1, t2 }) => {
    const svg = document.querySelector('svg.ecg-paper');
    const g = svg.querySelector(sel);
    const x0 = Number(g.dataset.x0), y = Number(g.dataset.baseline), ctm = svg.getScreenCTM();
    // time t is x0 + t * speed along the strip
    return [t1, t2].map((t) => { const p = new DOMPoint(x0 + t * mmPerS, y - 10).matrixTransform(ctm); return { x: p.x, y: p.y }; });
  }, { sel: selector, mmPerS: speed, t1: cfg.ecg.firstR + cfg.ecg.rr * 2, t2: cfg.ecg.firstR + cfg.ecg.rr * 3 });
  const rrMs = cfg.ecg.rr * 1000;
  const caliper = async (selector, speed) => {
    const [ra, rb] = await peaks(selector, speed);
    await drag(ra, rb);
    const readout = await page.locator('#caliper-readout').innerText();
    const ms = Number(/(\d+) ms/.exec(readout)?.[1]), bpm = Number(/(\d+) bpm/.exec(readout)?.[1]);
    if (!(Math.abs(ms - rrMs) <= 8 && Math.abs(bpm - 60000 / rrMs) <= 1)) throw new Error(`calipers at ${speed} mm/s read "${readout}", expected ${rrMs} ms / ${60000 / rrMs} bpm`);
    return { readout, span: rb.x - ra.x };
  };
  const { readout, span: span25 } = await caliper('g.lead[data-rhythm]', 25);
  await shot('04-ecg');
  await page.selectOption('select[name=layout]', '12x1');
  await page.waitForFunction(() => !document.querySelector('svg.ecg-paper g.lead[data-rhythm]') && document.querySelectorAll('svg.ecg-paper g.lead').length === 12);
  await shot('05-ecg-12x1');
  // at 50 mm/s the same interval is twice as long on screen and still reads the same
  await page.selectOption('select[name=speed]', '50');
  await page.waitForFunction(() => document.querySelector('svg.ecg-paper text.settings')?.textContent.includes('50 mm/s'));
  const { span: span50 } = await caliper('g.lead[data-lead=II]', 50);
  if (!(Math.abs(span50 / span25 - 2) < 0.05)) throw new Error(`50 mm/s is not twice 25 mm/s on screen: ${span25} px vs ${span50} px`);
  await shot('05b-ecg-50mm');
  step(`the ECG shows 12 labelled leads and the device's measurements; calipers read ${readout}, the same at 50 mm/s over twice the paper`);

  // ---- the referrer of the site: unread report, print page, PDF
  await login(cfg.referrerA);
  await page.waitForSelector('table.reports td.impression');
  const text = await page.locator('table.reports').innerText();
  if (!text.includes(cfg.impression)) throw new Error(`referrer A's list lacks the report: ${text}`);
  if (!(await page.locator('table.reports tr.unread').count())) throw new Error('a report never opened is not marked unread');
  const first = page.locator('table.reports tbody tr').first();
  if (!(await first.getAttribute('class')).includes('critical')) throw new Error('the report with a critical result is not first');
  if (!(await first.innerText()).includes(cfg.critical)) throw new Error('the referrer is not told what the critical result is');
  await shot('06-referrer');
  await first.locator('button.ack').click();
  await page.waitForSelector('table.reports tbody tr >> text=/已确认|Acknowledged/');
  const [print] = await Promise.all([page.waitForEvent('popup'), page.click('table.reports a.print')]);
  await print.waitForLoadState();
  if (!(await print.content()).includes(cfg.impression)) throw new Error('the print page lacks the impression');
  // its inline stylesheet is allowed by the page's Content-Security-Policy (by hash)
  const align = await print.evaluate(() => getComputedStyle(document.querySelector('h1')).textAlign);
  if (align !== 'center') throw new Error(`the print page's stylesheet was blocked (h1 text-align: ${align})`);
  await print.screenshot({ path: `${shots}/07-print.png` });
  await print.close();
  // the search: by patient ID, and one that finds nothing (the list before the search is
  // marked, so the wait is for the search's own page, not the one it replaces)
  await page.evaluate(() => { document.querySelector('table.reports').dataset.before = 'search'; });
  await page.fill('form.search input[name=q]', cfg.filmPatientId);
  await page.click('form.search button[type=submit]');
  await page.waitForFunction((pid) => document.querySelector('table.reports:not([data-before])')
    && [...document.querySelectorAll('table.reports tbody tr')].length >= 1
    && [...document.querySelectorAll('table.reports tbody tr')].every((tr) => tr.textContent.includes(pid)), cfg.filmPatientId);
  await page.fill('form.search input[name=q]', 'no-such-patient');
  await page.click('form.search button[type=submit]');
  await page.waitForFunction(() => !document.querySelector('table.reports'));
  await page.fill('form.search input[name=q]', '');
  await page.click('form.search button[type=submit]');
  await page.waitForSelector('table.reports a.pdf');
  const pdfHref = await page.locator('table.reports a.pdf').first().getAttribute('href');
  const pdf = await page.request.get(base + pdfHref);
  if (pdf.headers()['content-type'] !== 'application/pdf' || (await pdf.body()).subarray(0, 5).toString() !== '%PDF-') throw new Error('the PDF link gives no PDF');
  step('the referrer of the site sees the unread report with its critical result first, acknowledges it, prints it, searches, and gets its PDF');

  // ---- another site's referrer sees nothing
  await login(cfg.referrerB);
  await page.waitForSelector('section h2');
  if ((await page.content()).includes(cfg.impression)) throw new Error('referrer B sees site A\'s report');
  await shot('08-other-site');
  step('the referrer of another site does not');

  // ---- the technician: a folder upload with one file that is not DICOM, and a STAT flag
  await login(cfg.technician);
  await page.waitForSelector('#dropzone');
  await page.setInputFiles('input[name=folder]', cfg.uploadDir);
  await page.waitForSelector('#upload-summary[data-done]', { timeout: 60000 });
  const results = await page.$$eval('table.uploads tr[data-file]', (trs) => trs.map((tr) => ({ file: tr.dataset.file, state: tr.dataset.state, result: tr.querySelector('td.result').textContent })));
  const refused = results.filter((r) => r.state === 'refused');
  const stored = results.filter((r) => r.state === 'stored');
  if (refused.length !== 1 || !refused[0].file.endsWith(cfg.notDicom) || stored.length !== results.length - 1 || results.length !== cfg.uploadCount) {
    throw new Error(`upload results: ${JSON.stringify(results)}`);
  }
  // a file that looks like DICOM but is cut short: the server refuses it and says why
  await page.setInputFiles('input[name=files]', cfg.truncated);
  await page.waitForFunction(() => document.querySelectorAll('table.uploads tr[data-state]').length === 4);
  const cut = await page.locator('table.uploads tr[data-state=refused]').last().innerText();
  if (!cut.includes('truncated.dcm') || cut.includes('DICM')) throw new Error(`the server's refusal is not shown: ${cut}`);
  await page.waitForSelector(`table.studies tr[data-item] >> text=${cfg.uploadPatientId}`, { timeout: 30000 });
  await shot('09-technician-upload');
  const statRow = page.locator('table.studies tr[data-item]', { has: page.locator('button.stat') }).first();
  const statId = await statRow.getAttribute('data-item');
  await statRow.locator('button.stat').click();
  await page.waitForSelector(`table.studies tr[data-item="${statId}"].prio-stat`);
  step(`the technician uploads a folder: ${stored.length} stored, exactly ${refused[0].file} refused (${refused[0].result}); a cut-short file is refused with the server's reason (${cut.split('\t').pop()}); flags a study STAT`);

  // ---- the admin: turnaround dashboard and the directory
  await login(cfg.admin);
  await page.waitForSelector('svg.chart');
  await shot('10-admin-turnaround');
  await page.click('nav.tabs button[data-tab=users]');
  await page.waitForSelector('.admin table td');
  await shot('11-admin-users');
  // any pool's queue, chosen from the pools
  await page.click('nav.tabs button[data-tab=worklist]');
  await page.waitForSelector('select[name=pool]');
  const ecgPool = await page.$eval('select[name=pool]', (sel) => [...sel.options].find((o) => o.text.endsWith(': ecg'))?.value);
  await page.selectOption('select[name=pool]', ecgPool);
  await page.waitForSelector('table.worklist tr[data-item] >> text=ECG-SYN-75');
  await shot('12-admin-worklist');
  step('the admin sees the turnaround dashboard, the directory and any pool\'s queue');
  // the audit trail: the reader's sign-off is there, filtered by user and action
  await page.click('section h2 button');
  await page.click('nav.tabs button[data-tab=audit]');
  await page.waitForSelector('table.audit tbody tr');
  await page.fill('input[name=user]', cfg.reader[0]);
  await page.selectOption('select[name=action]', 'report_sign');
  await page.click('form.search button[type=submit]');
  await page.waitForFunction((user) => {
    const rows = [...document.querySelectorAll('table.audit tbody tr')];
    return rows.length > 0 && rows.every((r) => r.cells[1].textContent === user && r.cells[5].textContent === 'report_sign');
  }, cfg.reader[0], { timeout: 15000 });
  const csvHref = await page.getAttribute('a[download="readhub-audit.csv"]', 'href');
  const csv = await page.evaluate(async (href) => (await fetch(href)).text(), csvHref);
  if (!csv.includes('report_sign') || !csv.includes(cfg.reader[0])) throw new Error(`the audit export lacks the sign-off: ${csv.slice(0, 300)}`);
  await shot('13-admin-audit');
  step('the admin finds the reader\'s sign-off in the audit trail and exports it');

  // account lifecycle on the admin screen: disable and enable a reader, reset a password,
  // rename a site, remove an AE title (prompts answered like a person would)
  await page.click('nav.tabs button[data-tab=users]');
  const ecgRow = page.locator('.admin table tr', { has: page.locator('td', { hasText: /^ecg1$/ }) });
  await ecgRow.locator('button.disable').click();
  await page.locator('.admin table tr', { has: page.locator('td', { hasText: /^ecg1$/ }) }).locator('button.enable').waitFor();
  page.once('dialog', (d) => d.accept('reset in the browser 1'));
  await page.locator('.admin table tr', { has: page.locator('td', { hasText: /^ecg1$/ }) }).locator('button.enable').click();
  await page.locator('.admin table tr', { has: page.locator('td', { hasText: /^ecg1$/ }) }).locator('button.disable').waitFor();
  await page.locator('.admin table tr', { has: page.locator('td', { hasText: /^ecg1$/ }) }).locator('button.reset-password').click();
  await page.waitForTimeout(500);
  await page.click('nav.tabs button[data-tab=sites]');
  const siteB = () => page.locator('.admin table tr', { has: page.locator('td', { hasText: /^Township-B/ }) });
  await siteB().locator('button.remove-ae[data-ae=MODB2]').click();
  await page.waitForFunction(() => !document.querySelector('button.remove-ae[data-ae=MODB2]'));
  page.once('dialog', (d) => d.accept('Township-B (乡镇乙)'));
  await siteB().locator('button.rename').click();
  await page.waitForSelector('.admin table td >> text=Township-B (乡镇乙)');
  // bind the site to a modality's certificate by its fingerprint (as openssl prints it)
  page.once('dialog', (d) => d.accept(cfg.certFingerprint));
  await siteB().locator('button.bind-cert').click();
  await siteB().locator('span.cert').waitFor();
  await shot('14-admin-sites');
  step('the admin disables and enables a reader, resets a password, removes an AE title and renames a site');

  // a referrer changes their own password: the current one is required, a common one refused
  await login(cfg.referrerB);
  await page.click('#password');
  await page.fill('input[name=old_password]', 'not the password');
  await page.fill('input[name=new_password]', 'changed by doc-b 2');
  await page.click('form.login button[type=submit]');
  await page.waitForSelector('form.login p.note:not(:empty)');
  const wrongOld = await page.textContent('form.login p.note');
  await page.fill('input[name=old_password]', cfg.referrerB[1]);
  await page.fill('input[name=new_password]', 'woaini1314');
  await page.click('form.login button[type=submit]');
  await page.waitForFunction((prev) => document.querySelector('form.login p.note').textContent !== prev, wrongOld);
  const common = await page.textContent('form.login p.note');
  await page.fill('input[name=new_password]', 'changed by doc-b 2');
  await page.click('form.login button[type=submit]');
  await page.waitForFunction((prev) => document.querySelector('form.login p.note').textContent !== prev, common);
  const done = await page.textContent('form.login p.note');
  if (!wrongOld.includes('当前密码错误') || !common.includes('常见') || !done.includes('密码已修改')) throw new Error(`password change: ${wrongOld} / ${common} / ${done}`);
  await login(['doc-b', 'changed by doc-b 2']);
  step('a referrer changes their own password (the current one required, a common one refused) and logs in with it');
} catch (e) {
  await page.screenshot({ path: `${shots}/failed.png` }).catch(() => {});
  problems.push(String(e.stack || e));
}
await browser.close();
if (problems.length) {
  console.error('FAILED:\n  ' + problems.join('\n  '));
  process.exit(1);
}
