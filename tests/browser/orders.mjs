// Orders in the browser, in Debian's Chromium (headless), against a real readhub that
// tests/e2e (web_viewer::browser_orders_register_and_read) started:
//   - the technician of a site without a HIS registers an order (登记) on the desk: it is
//     listed as scheduled; a duplicate accession number is refused with its reason;
//   - (the test's modality then reads it from the modality worklist and sends the study)
//   - the radiologist opens the item: the request (申请单) is beside the images, with the
//     clinical question and history.
//   node orders.mjs CONFIG.json PHASE     (PHASE: register | read)
import fs from 'node:fs';
import { open } from './harness.mjs';

const cfg = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const phase = process.argv[3];
const { browser, page, problems, step, shot, login } = await open(cfg, { width: 1500, height: 1000, fullPage: true });

try {
  if (phase === 'register') {
    await login(cfg.technician);
    await page.waitForSelector('section.orders');
    await page.click('section.orders details > summary');
    const fill = async (name, v) => page.fill(`form.register [name=${name}]`, v);
    await fill('accession_number', cfg.accession);
    await fill('patient_id', cfg.patientId);
    await fill('patient_name', cfg.patientName);
    await page.selectOption('form.register [name=sex]', 'F');
    await fill('birth_date', '19700315');
    await fill('modality', 'DX');
    await fill('procedure_description', '胸部正位');
    await page.selectOption('form.register [name=priority]', 'urgent');
    await fill('clinical_history', cfg.history);
    await fill('clinical_question', cfg.question);
    await page.click('form.register button[type=submit]');
    await page.waitForSelector(`table.orders tr.order-scheduled >> text=${cfg.accession}`, { timeout: 20000 });
    await shot('o1-registered');
    step('the technician registers an order (登记); it is listed as scheduled');
    // the same accession again: refused, and the reason shown
    await page.click('section.orders details > summary').catch(() => {});
    if (!(await page.locator('form.register').isVisible())) await page.click('section.orders details > summary');
    await page.evaluate(() => { document.querySelector('#order-status').textContent = ''; });
    await fill('accession_number', cfg.accession);
    await fill('patient_id', 'OTHER');
    await fill('modality', 'DX');
    await page.click('form.register button[type=submit]');
    await page.waitForFunction(() => (document.querySelector('#order-status')?.textContent || '').length > 0, null, { timeout: 20000 });
    const why = await page.locator('#order-status').innerText();
    if (!why.includes('检查号') && !why.includes('accession')) throw new Error(`duplicate refusal: ${why}`);
    if ((await page.locator('table.orders tr[data-order]').count()) !== 1) throw new Error('a second order was listed');
    step(`a duplicate accession number is refused: ${why.slice(0, 80)}`);
  } else if (phase === 'admin') {
    // the admin: where a site's reports go, and the results outbox with a failing delivery
    await login(cfg.admin);
    await page.click('nav.tabs button[data-tab=results]');
    await page.waitForSelector('div.admin table tbody tr', { timeout: 20000 });
    const rows = await page.locator('div.admin table tbody').innerText();
    if (!rows.includes('HL7') || !rows.includes(cfg.deadHl7)) throw new Error(`the results outbox: ${rows}`);
    await page.click('nav.tabs button[data-tab=sites]');
    await page.waitForSelector('button.outbound');
    await shot('o3-admin-results');
    step(`the admin sees the results outbox (${rows.split('\n')[0].slice(0, 80)})`);
  } else {
    await login(cfg.reader);
    await page.waitForSelector(`table.worklist tr[data-item] >> text=${cfg.patientId}`, { timeout: 30000 });
    await page.keyboard.press('n');
    await page.waitForSelector('#order', { timeout: 30000 });
    const box = await page.locator('#order').innerText();
    for (const want of [cfg.question, cfg.history, '胸部正位', cfg.accession]) {
      if (!box.includes(want)) throw new Error(`the request lacks ${want}: ${box}`);
    }
    await shot('o2-reader-request');
    step('the radiologist sees the request (申请单) beside the images: question, history, procedure');
  }
  if (problems.length) throw new Error(problems.join('\n'));
} catch (e) {
  await shot(`o-failed-${phase}`).catch(() => {});
  console.error(`FAIL ${e.message}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
