// readhub's web viewer: plain ES modules, served by readhub itself. It speaks only the
// public API: /api (JSON) and /dicom-web. Chinese by default, English switchable.
import { value, firstPart, frameFromBytes, windowInto } from './dicom.js';

const T = {
  zh: {
    login: '登录', username: '用户名', password: '密码', logout: '退出', loginFailed: '登录失败',
    worklist: '阅片队列', claimNext: '认领下一个 (N)', nothingReady: '暂无待读检查', open: '打开', release: '放回队列',
    priority: '优先级', state: '状态', site: '机构', patient: '患者', modality: '类型', arrived: '到达', deadline: 'SLA',
    stat: '急诊', urgent: '加急', routine: '常规', breached: '超时', findings: '影像所见', impression: '诊断意见',
    saveDraft: '保存草稿', sign: '签发', signed: '已签发', saved: '已保存', back: '返回', template: '模板',
    window: '窗宽/窗位', reports: '报告', print: '打印', corrected: '已更正', studies: '本机构检查',
    reason: '退回原因', none: '无', receiving: '接收中', ready: '待读', claimed: '阅片中', preliminary: '待审核',
    reported: '已报告', rejected: '已退回', admin: '管理', noReports: '暂无报告', loading: '加载中…',
  },
  en: {
    login: 'Log in', username: 'User name', password: 'Password', logout: 'Log out', loginFailed: 'Login failed',
    worklist: 'Worklist', claimNext: 'Claim next (N)', nothingReady: 'Nothing to read', open: 'Open', release: 'Release',
    priority: 'Priority', state: 'State', site: 'Site', patient: 'Patient', modality: 'Modality', arrived: 'Arrived', deadline: 'SLA',
    stat: 'STAT', urgent: 'Urgent', routine: 'Routine', breached: 'Breached', findings: 'Findings', impression: 'Impression',
    saveDraft: 'Save draft', sign: 'Sign', signed: 'Signed', saved: 'Saved', back: 'Back', template: 'Template',
    window: 'W/L', reports: 'Reports', print: 'Print', corrected: 'Corrected', studies: 'Our studies',
    reason: 'Returned for', none: 'none', receiving: 'Receiving', ready: 'Ready', claimed: 'Reading', preliminary: 'Awaiting sign-off',
    reported: 'Reported', rejected: 'Returned', admin: 'Admin', noReports: 'No reports yet', loading: 'Loading…',
  },
};
let lang = localStorage.getItem('readhub.lang') || 'zh';
const t = (k) => T[lang][k] ?? k;
const app = document.getElementById('app');
let me = null;
let timers = [];

/** JSON API call; throws an Error carrying the server's message. */
async function api(path, opts = {}) {
  const r = await fetch(path, {
    credentials: 'same-origin',
    ...opts,
    headers: { 'content-type': 'application/json', 'x-requested-with': 'readhub-viewer', ...(opts.headers || {}) },
  });
  if (r.status === 204) return null;
  const body = r.headers.get('content-type')?.includes('json') ? await r.json() : await r.text();
  if (!r.ok) {
    const err = new Error(body?.error || `HTTP ${r.status}`);
    err.status = r.status;
    throw err;
  }
  return body;
}

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null && v !== false) el.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) el.append(c instanceof Node ? c : document.createTextNode(String(c ?? '')));
  return el;
}

function clearTimers() {
  timers.forEach((x) => clearInterval(x));
  timers = [];
  document.onkeydown = null;
}

function show(...nodes) {
  clearTimers();
  app.replaceChildren(...nodes);
}

const fmtTime = (ms) => (ms ? new Date(ms).toLocaleString(lang === 'zh' ? 'zh-CN' : 'en-GB', { hour12: false }) : '');
const personName = (pn) => (pn || '').replace(/\^/g, ' ').trim();

/** "12:34" left, or "-05:00" over: the SLA clock of an item. */
function slaText(deadline, now = Date.now()) {
  if (!deadline) return '';
  const s = Math.round((deadline - now) / 1000), a = Math.abs(s);
  const hh = Math.floor(a / 3600), mm = Math.floor((a % 3600) / 60), ss = a % 60;
  const txt = (hh ? `${hh}:${String(mm).padStart(2, '0')}` : `${mm}`) + `:${String(ss).padStart(2, '0')}`;
  return s < 0 ? `-${txt}` : txt;
}

// ---- login ----------------------------------------------------------------------------
function loginView(message) {
  const user = h('input', { name: 'username', autocomplete: 'username', required: true });
  const pass = h('input', { name: 'password', type: 'password', autocomplete: 'current-password', required: true });
  const err = h('p', { class: 'error', role: 'alert' }, message || '');
  const form = h('form', { class: 'login', onsubmit: async (e) => {
    e.preventDefault();
    try {
      await api('/api/login', { method: 'POST', body: JSON.stringify({ username: user.value, password: pass.value }) });
      boot();
    } catch (x) {
      err.textContent = `${t('loginFailed')}: ${x.message}`;
    }
  } },
  h('h1', {}, 'readhub'), h('label', {}, t('username'), user), h('label', {}, t('password'), pass),
  h('button', { type: 'submit' }, t('login')), err);
  show(form);
  user.focus();
}

// ---- reader: worklist ------------------------------------------------------------------
async function worklistView() {
  const tbody = h('tbody');
  const note = h('p', { class: 'note', role: 'status' });
  const claimNext = async () => {
    try {
      const item = await api('/api/worklist/next', { method: 'POST' });
      if (item) itemView(item.id);
      else note.textContent = t('nothingReady');
    } catch (x) {
      note.textContent = x.message;
    }
  };
  const render = (items) => {
    tbody.replaceChildren(...items.map((it) => {
      const mine = it.claimed_by === me.id;
      return h('tr', { class: `prio-${it.priority} state-${it.state}${it.breached_at ? ' breached' : ''}`, 'data-item': it.id },
        h('td', { class: 'prio' }, t(it.priority)),
        h('td', {}, t(it.state)),
        h('td', {}, it.site_name),
        h('td', {}, `${personName(it.patient_name)} (${it.patient_id})`),
        h('td', {}, it.modalities),
        h('td', {}, fmtTime(it.arrived_at)),
        h('td', { class: 'sla', 'data-deadline': it.deadline_at ?? '' }, it.breached_at ? t('breached') : slaText(it.deadline_at)),
        h('td', {}, mine ? h('button', { onclick: () => itemView(it.id) }, t('open')) : ''));
    }));
  };
  const refresh = async () => {
    try {
      render(await api('/api/worklist?limit=200'));
    } catch (x) {
      if (x.status === 401) return loginView();
      note.textContent = x.message;
    }
  };
  show(h('section', {},
    h('h2', {}, t('worklist'), ' ', h('button', { id: 'claim-next', onclick: claimNext }, t('claimNext'))),
    note,
    h('table', { class: 'worklist' },
      h('thead', {}, h('tr', {}, ...['priority', 'state', 'site', 'patient', 'modality', 'arrived', 'deadline', ''].map((k) => h('th', {}, k ? t(k) : '')))),
      tbody)));
  await refresh();
  timers.push(setInterval(refresh, 5000));
  timers.push(setInterval(() => {
    for (const td of tbody.querySelectorAll('td.sla[data-deadline]')) {
      if (td.dataset.deadline && !td.parentElement.classList.contains('breached')) td.textContent = slaText(Number(td.dataset.deadline));
    }
  }, 1000));
  document.onkeydown = (e) => {
    if ((e.key === 'n' || e.key === 'N') && !e.target.closest('input, textarea')) claimNext();
  };
}

// ---- reader: one study ----------------------------------------------------------------
/** A canvas that shows one instance: the server's rendered JPEG first, then the frame's
 * own samples, windowed here (drag: horizontal = width, vertical = level). */
function imageViewer(inst) {
  const canvas = h('canvas', { class: 'image', 'data-state': 'loading' });
  const label = h('span', { class: 'wl' });
  const ctx = canvas.getContext('2d');
  let frame = null, center = 0, width = 1, rgba = null, pending = false;
  const paint = () => {
    pending = false;
    windowInto(frame, center, width, frame.invert, rgba.data);
    ctx.putImageData(rgba, 0, 0);
    label.textContent = `${t('window')} ${Math.round(width)} / ${Math.round(center)}`;
  };
  const preview = new Image();
  preview.onload = () => {
    if (frame) return; // the samples arrived first
    canvas.width = preview.naturalWidth;
    canvas.height = preview.naturalHeight;
    ctx.drawImage(preview, 0, 0);
    canvas.dataset.state = 'preview';
  };
  preview.src = `${inst.rendered_url}?viewport=1024,1024`;
  (async () => {
    const meta = (await api(`${inst.retrieve_url}/metadata`))[0];
    const photometric = String(value(meta, '00280004', '')).trim();
    if (!photometric.startsWith('MONOCHROME')) return; // colour: the rendered image is the image
    const r = await fetch(`${inst.retrieve_url}/frames/1`, {
      credentials: 'same-origin',
      headers: {
        accept: 'multipart/related; type="application/octet-stream"; transfer-syntax=1.2.840.10008.1.2.1',
        'x-requested-with': 'readhub-viewer',
      },
    });
    if (!r.ok) return;
    frame = frameFromBytes(firstPart(await r.arrayBuffer(), r.headers.get('content-type')), meta);
    ({ center, width } = frame);
    canvas.width = frame.cols;
    canvas.height = frame.rows;
    rgba = ctx.createImageData(frame.cols, frame.rows);
    paint();
    canvas.dataset.state = 'pixels';
  })().catch((x) => { label.textContent = x.message; });
  let drag = null;
  canvas.addEventListener('pointerdown', (e) => { if (frame) { drag = { x: e.clientX, y: e.clientY, center, width }; canvas.setPointerCapture(e.pointerId); } });
  canvas.addEventListener('pointermove', (e) => {
    if (!drag) return;
    const range = Math.max(frame.hi - frame.lo, 1), k = range / 512;
    width = Math.max(1, drag.width + (e.clientX - drag.x) * k);
    center = drag.center + (e.clientY - drag.y) * k;
    if (!pending) { pending = true; requestAnimationFrame(paint); }
  });
  canvas.addEventListener('pointerup', () => { drag = null; });
  return h('div', { class: 'viewer' }, canvas, label);
}

async function itemView(id) {
  const data = await api(`/api/worklist/${id}`);
  const { item, instances } = data;
  const report = data.report || {};
  const findings = h('textarea', { name: 'findings', rows: 8 }, report.findings || '');
  const impression = h('textarea', { name: 'impression', rows: 4 }, report.impression || '');
  const status = h('p', { class: 'note', role: 'status', id: 'report-status' }, report.status ? t(report.status === 'final' ? 'signed' : 'saved') : '');
  const save = async () => api(`/api/worklist/${id}/report`, { method: 'PUT', body: JSON.stringify({ findings: findings.value, impression: impression.value }) });
  const templates = await api(`/api/report-templates?item=${id}`).catch(() => []);
  const picker = h('select', { name: 'template', onchange: () => {
    const tpl = templates.find((x) => x.id === picker.value);
    if (!tpl) return;
    findings.value = lang === 'zh' ? tpl.findings_zh : tpl.findings_en;
    impression.value = lang === 'zh' ? tpl.impression_zh : tpl.impression_en;
  } }, h('option', { value: '' }, `${t('template')}…`), ...templates.map((x) => h('option', { value: x.id }, lang === 'zh' ? x.name_zh : x.name_en)));
  const buttons = item.state === 'claimed' && item.claimed_by === me.id
    ? [
      h('button', { id: 'save-draft', onclick: async () => { try { await save(); status.textContent = t('saved'); } catch (x) { status.textContent = x.message; } } }, t('saveDraft')),
      h('button', { id: 'sign', onclick: async () => {
        try { await save(); await api(`/api/worklist/${id}/report/sign`, { method: 'POST' }); status.textContent = t('signed'); } catch (x) { status.textContent = x.message; }
      } }, t('sign')),
      h('button', { onclick: async () => { await api(`/api/worklist/${id}/release`, { method: 'POST' }); worklistView(); } }, t('release')),
    ]
    : [];
  show(h('section', { class: 'reading' },
    h('div', { class: 'images' }, ...instances.slice(0, 1).map(imageViewer)),
    h('form', { class: 'report', onsubmit: (e) => e.preventDefault() },
      h('h2', {}, `${personName(item.patient_name)} · ${item.patient_id} · ${item.modalities} · ${item.site_name}`),
      h('p', { class: `prio-${item.priority}` }, `${t(item.priority)} · ${t('deadline')} ${fmtTime(item.deadline_at)}`),
      picker,
      h('label', {}, t('findings'), findings), h('label', {}, t('impression'), impression),
      h('div', { class: 'buttons' }, ...buttons, h('button', { type: 'button', onclick: () => worklistView() }, t('back'))),
      status)));
}

// ---- referrer: reports; technician: the site's studies ----------------------------------
async function reportsView() {
  const reports = await api('/api/reports');
  show(h('section', {}, h('h2', {}, t('reports')),
    reports.length ? h('table', { class: 'reports' },
      h('thead', {}, h('tr', {}, ...['patient', 'modality', 'impression', 'signed', ''].map((k) => h('th', {}, k ? t(k) : '')))),
      h('tbody', {}, ...reports.map((r) => h('tr', { 'data-report': r.id },
        h('td', {}, `${personName(r.patient_name)} (${r.patient_id})`), h('td', {}, r.modalities),
        h('td', { class: 'impression' }, r.impression, r.corrected ? h('span', { class: 'tag' }, t('corrected')) : ''),
        h('td', {}, fmtTime(r.signed_at)),
        h('td', {}, h('a', { href: `/api/reports/${r.id}/print`, target: '_blank' }, t('print')))))))
      : h('p', { class: 'note' }, t('noReports'))));
}

async function siteStudiesView() {
  const items = await api('/api/site/studies');
  show(h('section', {}, h('h2', {}, t('studies')),
    h('table', { class: 'studies' },
      h('thead', {}, h('tr', {}, ...['patient', 'modality', 'arrived', 'state', 'reason'].map((k) => h('th', {}, t(k))))),
      h('tbody', {}, ...items.map((it) => h('tr', { class: `state-${it.state}` },
        h('td', {}, `${personName(it.patient_name)} (${it.patient_id})`), h('td', {}, it.modalities), h('td', {}, fmtTime(it.arrived_at)),
        h('td', {}, t(it.state)), h('td', {}, it.rejected_reason ? `${it.rejected_reason} ${it.rejected_note || ''}` : '')))))));
}

// ---- start ------------------------------------------------------------------------------
async function boot() {
  document.documentElement.lang = lang === 'zh' ? 'zh-CN' : 'en';
  document.getElementById('lang').textContent = lang === 'zh' ? 'EN' : '中文';
  const logout = document.getElementById('logout');
  try {
    me = await api('/api/session');
  } catch (x) {
    me = null;
    return loginView(x.message);
  }
  if (!me) {
    logout.hidden = true;
    document.getElementById('who').textContent = '';
    return loginView();
  }
  document.getElementById('who').textContent = `${me.display_name} · ${me.role}`;
  logout.hidden = false;
  logout.textContent = t('logout');
  if (me.role === 'reader') return worklistView();
  if (me.role === 'referrer') return reportsView();
  if (me.role === 'technician') return siteStudiesView();
  return reportsView();
}

document.getElementById('lang').addEventListener('click', () => {
  lang = lang === 'zh' ? 'en' : 'zh';
  localStorage.setItem('readhub.lang', lang);
  boot();
});
document.getElementById('logout').addEventListener('click', async () => {
  await api('/api/logout', { method: 'POST' }).catch(() => {});
  boot();
});
boot();
