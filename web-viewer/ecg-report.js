// The ECG side of a reader's report: the 心电图诊断 form (rhythm, rate, axis and intervals,
// pre-filled from readhub's measurements; diagnosis statements from the standard Chinese
// ECG terms, free text allowed), the sentence comparing with the prior ECG, and the
// critical-ECG suggestions the reader confirms or dismisses. Speaks only the public API.

const L = {
  zh: {
    ecgForm: '心电图诊断', rhythm: '心律', rate: '心率 (次/分)', axis: '电轴 (°)', pr: 'PR (ms)', qrs: 'QRS (ms)', qt: 'QT (ms)', qtc: 'QTc (ms)',
    statements: '诊断', other: '其他（自由文本）', fill: '填入报告', compareSentence: '与前次心电图比较', suggestion: '危急值提示',
    confirm: '确认并通知', dismiss: '排除', why: '排除原因', finding: '危急值内容（可修改）', confirmed: '已确认', dismissed: '已排除', rule: '规则',
    bpm: '次/分', unchanged: '余无明显变化',
  },
  en: {
    ecgForm: 'ECG diagnosis', rhythm: 'Rhythm', rate: 'Rate (bpm)', axis: 'Axis (°)', pr: 'PR (ms)', qrs: 'QRS (ms)', qt: 'QT (ms)', qtc: 'QTc (ms)',
    statements: 'Diagnosis', other: 'Other (free text)', fill: 'Fill the report', compareSentence: 'Compared with the prior ECG', suggestion: 'Critical ECG suggested',
    confirm: 'Confirm and notify', dismiss: 'Dismiss', why: 'Why dismissed', finding: 'Critical finding (editable)', confirmed: 'Confirmed', dismissed: 'Dismissed', rule: 'Rule',
    bpm: 'bpm', unchanged: 'otherwise no significant change',
  },
};

/** Rhythms, and the common diagnosis statements (常用心电图诊断术语), Chinese and English. */
export const RHYTHMS = [
  ['窦性心律', 'Sinus rhythm'], ['窦性心动过速', 'Sinus tachycardia'], ['窦性心动过缓', 'Sinus bradycardia'], ['窦性心律不齐', 'Sinus arrhythmia'],
  ['心房颤动', 'Atrial fibrillation'], ['心房扑动', 'Atrial flutter'], ['阵发性室上性心动过速', 'Paroxysmal SVT'], ['交界性心律', 'Junctional rhythm'],
  ['室性心动过速', 'Ventricular tachycardia'], ['心室颤动', 'Ventricular fibrillation'], ['起搏心律', 'Paced rhythm'],
];
export const TERMS = [
  ['正常心电图', 'Normal ECG'], ['大致正常心电图', 'Borderline ECG'], ['房性早搏', 'Atrial premature complexes'], ['室性早搏', 'Ventricular premature complexes'],
  ['一度房室传导阻滞', 'First-degree AV block'], ['二度Ⅰ型房室传导阻滞', 'Second-degree AV block, Mobitz I'], ['二度Ⅱ型房室传导阻滞', 'Second-degree AV block, Mobitz II'],
  ['三度房室传导阻滞', 'Complete (third-degree) AV block'], ['完全性右束支传导阻滞', 'Complete RBBB'], ['不完全性右束支传导阻滞', 'Incomplete RBBB'],
  ['完全性左束支传导阻滞', 'Complete LBBB'], ['左前分支阻滞', 'Left anterior fascicular block'], ['左心室肥厚', 'Left ventricular hypertrophy'],
  ['右心室肥厚', 'Right ventricular hypertrophy'], ['急性前壁心肌梗死', 'Acute anterior MI'], ['急性下壁心肌梗死', 'Acute inferior MI'],
  ['陈旧性心肌梗死', 'Old myocardial infarction'], ['ST段抬高', 'ST elevation'], ['ST段压低', 'ST depression'], ['T波改变', 'T-wave changes'],
  ['ST-T改变', 'ST-T changes'], ['QT间期延长', 'Prolonged QT'], ['电轴左偏', 'Left axis deviation'], ['电轴右偏', 'Right axis deviation'],
  ['低电压', 'Low voltage'], ['预激综合征', 'Pre-excitation (WPW)'],
];

function h(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (v !== false && v !== null && v !== undefined) e.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined && c !== '') e.append(c);
  return e;
}

const round = (v) => (v === null || v === undefined ? '' : String(Math.round(v)));

/** A rhythm from the rate when the device said nothing better. */
function guessRhythm(wf) {
  const said = (wf.statements || []).join(' ').toLowerCase();
  for (const [zh, en] of RHYTHMS) if (said.includes(en.toLowerCase()) || said.includes(zh)) return zh;
  const hr = wf.computed?.heart_rate_bpm;
  if (hr === undefined || hr === null) return '';
  return hr < 60 ? '窦性心动过缓' : hr > 100 ? '窦性心动过速' : '窦性心律';
}

/**
 * The ECG report form. `wf` is the waveform JSON (with `computed`); `prior` the prior ECG's
 * waveform JSON and its date, when there is one; `findings`/`impression` the report's text
 * areas it fills.
 */
export function ecgForm({ wf, prior, lang, findings, impression, editable }) {
  const t = (k) => L[lang()][k] ?? k;
  const c = wf.computed || {};
  const field = (name, value) => h('input', { name: `ecg-${name}`, value, size: 5, readonly: !editable });
  const rhythm = h('select', { name: 'ecg-rhythm', disabled: !editable }, ...RHYTHMS.map(([zh, en]) => h('option', { value: zh }, lang() === 'zh' ? zh : `${en} ${zh}`)));
  rhythm.value = guessRhythm(wf);
  const fields = {
    rate: field('rate', round(c.heart_rate_bpm)), axis: field('axis', round(c.qrs_axis_deg)), pr: field('pr', round(c.pr_ms)),
    qrs: field('qrs', round(c.qrs_ms)), qt: field('qt', round(c.qt_ms)), qtc: field('qtc', round(c.qtc_bazett_ms)),
  };
  const checks = TERMS.map(([zh, en]) => h('label', { class: 'term' }, h('input', { type: 'checkbox', name: 'ecg-term', value: zh, disabled: !editable }), ` ${lang() === 'zh' ? zh : `${en} ${zh}`}`));
  const other = h('input', { name: 'ecg-other', placeholder: t('other'), readonly: !editable });
  const compareText = prior ? comparison(wf, prior) : '';
  const fill = h('button', { type: 'button', id: 'ecg-fill', disabled: !editable, onclick: () => {
    const v = (k) => fields[k].value || '__';
    findings.value = `${rhythm.value}，心率 ${v('rate')} 次/分。PR 间期 ${v('pr')} ms，QRS 时限 ${v('qrs')} ms，QT/QTc ${v('qt')}/${v('qtc')} ms，电轴 ${v('axis')}°。`
      + (compareText ? `\n${compareText}` : '');
    const picked = checks.map((l) => l.querySelector('input')).filter((i) => i.checked).map((i) => i.value);
    const lines = [rhythm.value, ...picked, ...(other.value.trim() ? [other.value.trim()] : [])];
    impression.value = lines.map((x, i) => `${i + 1}. ${x}`).join('\n');
  } }, t('fill'));
  return h('fieldset', { class: 'ecg-form', id: 'ecg-form' }, h('legend', {}, t('ecgForm')),
    h('label', {}, t('rhythm'), ' ', rhythm),
    h('div', { class: 'ecg-values' }, ...Object.entries(fields).map(([k, f]) => h('label', {}, t(k), ' ', f))),
    h('details', { class: 'terms' }, h('summary', {}, t('statements')), ...checks), other,
    compareText ? h('p', { class: 'note', id: 'ecg-compare-sentence' }, compareText) : '',
    fill);
}

/** "与前次心电图（日期）比较：心率 75→68 次/分，QTc 447→430 ms…" from both computed sets. */
export function comparison(wf, prior) {
  const a = wf.computed || {}, b = prior.wf.computed || {};
  const parts = [];
  const pair = (name, field, unit, min) => {
    const x = a[field], y = b[field];
    if (x === null || x === undefined || y === null || y === undefined) return;
    if (Math.abs(x - y) >= min) parts.push(`${name} ${Math.round(y)}→${Math.round(x)} ${unit}`);
  };
  pair('心率', 'heart_rate_bpm', '次/分', 5);
  pair('PR', 'pr_ms', 'ms', 20);
  pair('QRS', 'qrs_ms', 'ms', 20);
  pair('QTc', 'qtc_bazett_ms', 'ms', 20);
  pair('电轴', 'qrs_axis_deg', '°', 20);
  const when = prior.title ? `（${prior.title}）` : '';
  return `与前次心电图${when}比较：${parts.length ? `${parts.join('，')}，余无明显变化` : '无明显变化'}。`;
}

/** The critical-ECG suggestions of an item: confirm (a critical result to the site) or dismiss. */
export function suggestionsPanel({ id, lang, api, canDecide, onChange }) {
  const t = (k) => L[lang()][k] ?? k;
  const box = h('section', { class: 'ecg-suggestions', id: 'ecg-suggestions' });
  const load = async () => {
    const list = await api(`/api/worklist/${id}/ecg-suggestions`).catch(() => []);
    box.replaceChildren(...list.map((s) => {
      const status = h('p', { class: 'note' });
      if (s.state !== 'suggested') {
        return h('div', { class: `suggestion ${s.state}`, 'data-suggestion': s.id },
          h('b', {}, `${t(s.state)} · ${s.rule}`), h('p', {}, `${s.evidence}${s.note ? ` — ${s.note}` : ''} (${s.decided_by_name || ''})`));
      }
      const text = h('input', { name: 'suggestion-text', placeholder: t('finding'), value: s.rule });
      const why = h('input', { name: 'suggestion-why', placeholder: t('why') });
      const decide = (action, body) => async () => {
        try {
          await api(`/api/ecg-suggestions/${s.id}/${action}`, { method: 'POST', body: JSON.stringify(body()) });
          await load();
          onChange?.();
        } catch (x) { status.textContent = x.message; }
      };
      return h('div', { class: 'suggestion suggested', role: 'alert', 'data-suggestion': s.id },
        h('b', {}, `⚠ ${t('suggestion')}: ${s.rule}`), h('p', {}, s.evidence),
        canDecide ? h('div', { class: 'decide' },
          text, h('button', { type: 'button', class: 'confirm primary', onclick: decide('confirm', () => ({ text: text.value })) }, t('confirm')),
          why, h('button', { type: 'button', class: 'dismiss', onclick: decide('dismiss', () => ({ text: why.value })) }, t('dismiss'))) : '',
        status);
    }));
  };
  load();
  return box;
}
