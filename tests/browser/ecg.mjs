// The ECG screens end to end, in Debian's Chromium (headless), against a real readhub that
// tests/e2e (web_viewer::browser_ecg_upload_serial_critical) has started and filled with a
// prior ECG of the patient:
//   - the technician uploads an HL7 aECG file from the cart: stored, the format named;
//   - the ECG physician finds it STAT (the critical criteria fired), opens it: the prior ECG
//     under it on the same paper with both measurements and the change; readhub's
//     measurements beside the device's; the suggested 危急值 (bradycardia, and the device's
//     "acute MI"): dismisses one with a reason, confirms the other; the ECG report form
//     pre-filled from the measurements, with the comparison sentence; signs;
//   - the referrer sees the report and the confirmed critical result.
//   node ecg.mjs CONFIG.json
import fs from 'node:fs';
import { open } from './harness.mjs';

const cfg = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const { browser, page, problems, step, shot, login } = await open(cfg, { width: 1500, height: 1000, fullPage: true });

const near = (v, want, tol) => Math.abs(Number(v) - want) <= tol;

try {
  // ---- the technician: the cart's aECG file
  await login(cfg.technician);
  await page.waitForSelector('#dropzone');
  await page.setInputFiles('input[name=files]', cfg.ecgFile);
  await page.waitForSelector('table.uploads tr[data-state]', { timeout: 60000 });
  const up = await page.locator('table.uploads tr[data-state]').innerText();
  if (!up.includes('HL7 aECG') || (await page.locator('table.uploads tr[data-state=stored]').count()) !== 1) throw new Error(`the aECG upload: ${up}`);
  await page.setInputFiles('input[name=files]', cfg.brokenFile);
  await page.waitForFunction(() => document.querySelectorAll('table.uploads tr[data-state]').length === 2);
  const broken = await page.locator('table.uploads tr[data-state=refused]').innerText();
  if (!broken.includes('Philips Sierra XML')) throw new Error(`the broken file's reason: ${broken}`);
  await shot('e1-technician-upload');
  step(`the technician uploads the cart's aECG (${up.split('\t').pop()}); a broken Philips file is refused with its reason`);

  // ---- the ECG physician: STAT first, the prior under it, measurements side by side
  await login(cfg.ecgReader);
  // STAT (the critical criteria fired) and ready (the worklist refreshes itself)
  await page.waitForSelector(`table.worklist tr[data-item].prio-stat.state-ready >> text=${cfg.patientId}`, { timeout: 30000 });
  await page.keyboard.press('n');
  await page.waitForSelector('svg.ecg-paper g.lead[data-rhythm]', { timeout: 60000 });
  await page.waitForSelector('svg.prior-paper g.lead[data-rhythm]', { timeout: 30000 });
  const serial = await page.$$eval('.ecg-side table.serial tr[data-measure]', (trs) => Object.fromEntries(trs.map((tr) => [tr.dataset.measure, [...tr.children].map((td) => td.textContent)])));
  const [, hrNow, hrPrior, hrDelta] = serial.heart_rate;
  if (!near(hrNow, cfg.hr, 2) || !near(hrPrior, cfg.priorHr, 2) || !near(hrDelta, cfg.hr - cfg.priorHr, 3)) throw new Error(`serial comparison: ${JSON.stringify(serial)}`);
  const paperWidths = await page.evaluate(() => [...document.querySelectorAll('svg.ecg-paper')].map((s) => s.viewBox.baseVal.width));
  if (paperWidths.length !== 2 || Math.abs(paperWidths[0] - paperWidths[1]) > 1) throw new Error(`the two ECGs are not on the same paper scale: ${paperWidths}`);
  const measured = await page.$$eval('.ecg-side table.measurements tr[data-measure]', (trs) => Object.fromEntries(trs.map((tr) => [tr.dataset.measure, [...tr.children].map((td) => td.textContent)])));
  if (!near(measured.heart_rate[1], cfg.hr, 2) || !near(measured.heart_rate[2], cfg.hr, 1)) throw new Error(`readhub's and the device's heart rate: ${JSON.stringify(measured)}`);
  if (!near(measured.qt[1], 400, 10)) throw new Error(`readhub's QT: ${JSON.stringify(measured)}`);
  await shot('e2-serial-comparison');
  step(`the STAT ECG opens with the prior under it on the same paper: HR ${hrNow} now, ${hrPrior} before (${hrDelta}); readhub's measurements beside the device's`);

  // ---- the suggested critical results: dismiss one (recorded), confirm the other
  await page.waitForFunction(() => document.querySelectorAll('#ecg-suggestions .suggestion.suggested').length === 2);
  const mi = page.locator('#ecg-suggestions .suggestion.suggested', { hasText: 'STEMI' });
  await mi.locator('input[name=suggestion-why]').fill(cfg.dismissReason);
  await mi.locator('button.dismiss').click();
  await page.waitForSelector('#ecg-suggestions .suggestion.dismissed');
  const brady = page.locator('#ecg-suggestions .suggestion.suggested', { hasText: 'heart rate < 40' });
  await brady.locator('input[name=suggestion-text]').fill(cfg.critical);
  await brady.locator('button.confirm').click();
  await page.waitForSelector('#ecg-suggestions .suggestion.confirmed');
  await shot('e3-suggestions');
  step('the reader dismisses the "acute MI" suggestion with a reason and confirms the bradycardia as a critical result');

  // ---- the ECG report form: pre-filled, the comparison sentence, fill and sign
  await page.waitForSelector('#ecg-form input[name=ecg-rate]');
  const rate = await page.inputValue('#ecg-form input[name=ecg-rate]');
  if (!near(rate, cfg.hr, 2)) throw new Error(`the form's rate: ${rate}`);
  const rhythm = await page.inputValue('#ecg-form select[name=ecg-rhythm]');
  if (rhythm !== '窦性心动过缓') throw new Error(`the form's rhythm: ${rhythm}`);
  const sentence = await page.locator('#ecg-compare-sentence').innerText();
  if (!sentence.includes('与前次心电图') || !sentence.includes('心率')) throw new Error(`the comparison sentence: ${sentence}`);
  await page.click('#ecg-form details.terms summary');
  await page.locator('#ecg-form label.term', { hasText: '一度房室传导阻滞' }).locator('input').check();
  await page.click('#ecg-fill');
  const findings = await page.inputValue('textarea[name=findings]');
  const impression = await page.inputValue('textarea[name=impression]');
  if (!findings.includes(`心率 ${rate} 次/分`) || !findings.includes('与前次心电图')) throw new Error(`the findings: ${findings}`);
  if (!impression.includes('窦性心动过缓') || !impression.includes('一度房室传导阻滞')) throw new Error(`the impression: ${impression}`);
  const labels = await page.locator('form.report label').allTextContents();
  if (!labels.some((l) => l.startsWith('心电图所见')) || labels.some((l) => l.startsWith('影像所见'))) throw new Error(`an ECG report says 影像所见: ${labels}`);
  await shot('e4-ecg-report');
  await page.click('#sign');
  await page.waitForFunction(() => document.getElementById('report-status')?.textContent.includes('已签发'));
  step(`the ECG report form is pre-filled (rate ${rate}, ${rhythm}), says how it compares with the prior, fills the report and is signed`);

  // ---- the referrer: the report and the confirmed critical result
  await login(cfg.referrer);
  await page.waitForSelector('table.reports td.impression');
  const list = await page.locator('table.reports').innerText();
  if (!list.includes('窦性心动过缓') || !list.includes(cfg.critical)) throw new Error(`the referrer's list: ${list}`);
  await shot('e5-referrer');
  step('the referring site sees the ECG report and the confirmed critical result');
} catch (e) {
  await shot('zz-failure').catch(() => {});
  console.log(`FAIL ${e.stack || e}`);
  process.exitCode = 1;
}
if (problems.length) {
  console.log(`FAIL page problems:\n${problems.join('\n')}`);
  process.exitCode = 1;
}
await browser.close();
