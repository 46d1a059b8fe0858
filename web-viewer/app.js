// readhub's web viewer: plain ES modules, served by readhub itself. It speaks only the
// public API: /api (JSON) and /dicom-web. Chinese by default, English switchable.
import { Viewport, toolbar, handleKey, seriesStrip } from './viewer.js';
import { EcgViewer, handleEcgKey } from './ecg.js';
import { ecgForm, suggestionsPanel } from './ecg-report.js';

const T = {
  zh: {
    login: '登录', username: '用户名', password: '密码', logout: '退出', loginFailed: '登录失败',
    worklist: '阅片队列', claimNext: '认领下一个 (N)', nothingReady: '暂无待读检查', open: '打开', release: '放回队列',
    priority: '优先级', state: '状态', site: '机构', patient: '患者', modality: '类型', arrived: '到达', deadline: 'SLA',
    stat: '急诊', urgent: '加急', routine: '常规', breached: '超时', findings: '影像所见', impression: '诊断意见', ecgFindings: '心电图所见', ecgImpression: '心电图诊断',
    saveDraft: '保存草稿', sign: '签发', signed: '已签发', saved: '已保存', back: '返回', template: '模板',
    window: '窗宽/窗位', reports: '报告', print: '打印', corrected: '已更正', studies: '本机构检查',
    reason: '退回原因', none: '无', receiving: '接收中', ready: '待读', claimed: '阅片中', preliminary: '待审核',
    reported: '已报告', rejected: '已退回', admin: '管理', noReports: '暂无报告', loading: '加载中…',
    submit: '提交审核', critical: '危急值', criticalFinding: '危急值内容', flagCritical: '上报危急值', flagged: '已上报危急值',
    reject: '退回重拍', rejectNote: '退回说明', addendum: '补充报告', addAddendum: '签发补充报告', sendBack: '退回修改', note: '说明',
    priors: '既往检查', compare: '对比', closeCompare: '关闭对比', noPriors: '无既往检查', all: '全部', mine: '我的',
    filter: '筛选', search: '搜索', from: '从', to: '至', unread: '未读', acknowledge: '确认危急值', acknowledged: '已确认',
    pdf: 'PDF', view: '查看', upload: '上传 DICOM / 心电图', chooseFiles: '选择文件', chooseFolder: '选择文件夹',
    dropHere: '将 DICOM 文件、心电图文件（HL7 aECG、Philips XML）或文件夹拖放到此处', uploading: '上传中', stored: '已接收', refused: '拒收', notDicom: '不是 DICOM 或可识别的心电图文件',
    file: '文件', size: '大小', progress: '进度', result: '结果', flagStat: '标记急诊', queued: '已入队',
    sites: '机构', pools: '阅片组', users: '用户', rules: '路由规则', sla: 'SLA 设置', turnaround: '工作量与周转', add: '添加', saveRules: '保存规则',
    name: '名称', aeTitles: 'AE Title', consortium: '医共体', kind: '类型', role: '角色', display: '显示名', arrivedN: '到达', reportedN: '已报告', breachedN: '超时', rejectedN: '退回',
    p50: 'P50 分钟', p90: 'P90 分钟', by: '分组', day: '日期', reader: '医生', pool: '阅片组', statMin: '急诊(分钟)', urgentMin: '加急(分钟)', routineMin: '常规(分钟)',
    audit: '审计日志', time: '时间', client: '客户端地址', action: '操作', outcome: '结果', study: '检查 UID', detail: '详情', more: '更多',
    changePassword: '修改密码', oldPassword: '当前密码', newPassword: '新密码', passwordChanged: '密码已修改，其他登录已退出',
    resetPassword: '重置密码', rename: '改名', remove: '移除', actions: '操作', certificates: '绑定证书', bindCert: '绑定证书（SHA-256 指纹）',
    exportCsv: '导出 CSV', exportNdjson: '导出 NDJSON', patientId: '患者 ID', disable: '停用', enable: '启用', disabled: '已停用',
    results: '结果发送', outbound: '结果发送地址', outboundPrompt: '结果发送地址 (JSON: hl7, fhir, pacs)', channel: '通道', destination: '目标', event: '事件', attempts: '尝试次数', out_pending: '待发送', out_failed: '发送失败', out_delivered: '已送达',
    order: '申请单', clinicalHistory: '病史', clinicalQuestion: '检查目的', requestedBy: '申请医生', procedure: '检查项目', orders: '检查申请', register: '登记', accession: '检查号', scheduled: '预约时间', sex: '性别', birthDate: '出生日期', cancelled: '已取消', overdue: '超时未检', scheduledState: '待检查', arrivedState: '已到检', cancel: '取消',
    positioning: '体位不正', exposure: '曝光不当', motion: '运动伪影', artefact: '异物伪影', wrong_patient_or_part: '患者或部位错误', incomplete: '检查不完整',
  },
  en: {
    login: 'Log in', username: 'User name', password: 'Password', logout: 'Log out', loginFailed: 'Login failed',
    worklist: 'Worklist', claimNext: 'Claim next (N)', nothingReady: 'Nothing to read', open: 'Open', release: 'Release',
    priority: 'Priority', state: 'State', site: 'Site', patient: 'Patient', modality: 'Modality', arrived: 'Arrived', deadline: 'SLA',
    stat: 'STAT', urgent: 'Urgent', routine: 'Routine', breached: 'Breached', findings: 'Findings', impression: 'Impression', ecgFindings: 'ECG findings', ecgImpression: 'ECG diagnosis',
    saveDraft: 'Save draft', sign: 'Sign', signed: 'Signed', saved: 'Saved', back: 'Back', template: 'Template',
    window: 'W/L', reports: 'Reports', print: 'Print', corrected: 'Corrected', studies: 'Our studies',
    reason: 'Returned for', none: 'none', receiving: 'Receiving', ready: 'Ready', claimed: 'Reading', preliminary: 'Awaiting sign-off',
    reported: 'Reported', rejected: 'Returned', admin: 'Admin', noReports: 'No reports yet', loading: 'Loading…',
    submit: 'Submit for sign-off', critical: 'Critical', criticalFinding: 'Critical finding', flagCritical: 'Flag critical result', flagged: 'Critical result flagged',
    reject: 'Return for retake', rejectNote: 'Note for the site', addendum: 'Addendum', addAddendum: 'Sign addendum', sendBack: 'Send back', note: 'Note',
    priors: 'Priors', compare: 'Compare', closeCompare: 'Close comparison', noPriors: 'No prior studies', all: 'All', mine: 'Mine',
    filter: 'Filter', search: 'Search', from: 'From', to: 'To', unread: 'Unread', acknowledge: 'Acknowledge', acknowledged: 'Acknowledged',
    pdf: 'PDF', view: 'View', upload: 'Upload DICOM / ECG', chooseFiles: 'Choose files', chooseFolder: 'Choose folder',
    dropHere: 'Drop DICOM files, ECG files (HL7 aECG, Philips XML) or a folder here', uploading: 'Uploading', stored: 'Stored', refused: 'Refused', notDicom: 'neither a DICOM file nor an ECG file readhub reads',
    file: 'File', size: 'Size', progress: 'Progress', result: 'Result', flagStat: 'Flag STAT', queued: 'Queued',
    sites: 'Sites', pools: 'Pools', users: 'Users', rules: 'Routing rules', sla: 'SLA', turnaround: 'Turnaround', add: 'Add', saveRules: 'Save rules',
    name: 'Name', aeTitles: 'AE titles', consortium: 'Consortium', kind: 'Kind', role: 'Role', display: 'Display name', arrivedN: 'Arrived', reportedN: 'Reported', breachedN: 'Breached', rejectedN: 'Returned',
    p50: 'p50 min', p90: 'p90 min', by: 'By', day: 'Day', reader: 'Reader', pool: 'Pool', statMin: 'STAT (min)', urgentMin: 'Urgent (min)', routineMin: 'Routine (min)',
    audit: 'Audit trail', time: 'Time', client: 'Client', action: 'Action', outcome: 'Outcome', study: 'Study UID', detail: 'Detail', more: 'More',
    changePassword: 'Change password', oldPassword: 'Current password', newPassword: 'New password', passwordChanged: 'Password changed; other sessions signed out',
    resetPassword: 'Reset password', rename: 'Rename', remove: 'Remove', actions: 'Actions', certificates: 'Certificates', bindCert: 'Bind a certificate (SHA-256 fingerprint)',
    exportCsv: 'Export CSV', exportNdjson: 'Export NDJSON', patientId: 'Patient ID', disable: 'Disable', enable: 'Enable', disabled: 'Disabled',
    results: 'Results out', outbound: 'Results to', outboundPrompt: 'Where reports go (JSON: hl7, fhir, pacs)', channel: 'Channel', destination: 'Destination', event: 'Event', attempts: 'Attempts', out_pending: 'Pending', out_failed: 'Failing', out_delivered: 'Delivered',
    order: 'Request', clinicalHistory: 'History', clinicalQuestion: 'Clinical question', requestedBy: 'Requested by', procedure: 'Procedure', orders: 'Orders', register: 'Register', accession: 'Accession', scheduled: 'Scheduled', sex: 'Sex', birthDate: 'Birth date', cancelled: 'Cancelled', overdue: 'Overdue', scheduledState: 'Scheduled', arrivedState: 'Arrived', cancel: 'Cancel',
    positioning: 'Positioning', exposure: 'Exposure', motion: 'Motion', artefact: 'Artefact', wrong_patient_or_part: 'Wrong patient or part', incomplete: 'Incomplete',
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
const fmtDate = (d) => (d && d.length === 8 ? `${d.slice(0, 4)}-${d.slice(4, 6)}-${d.slice(6)}` : d || '');
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

/** A user changes their own password (the current one is asked for). */
function passwordView() {
  const old = h('input', { name: 'old_password', type: 'password', autocomplete: 'current-password', required: true });
  const pw = h('input', { name: 'new_password', type: 'password', autocomplete: 'new-password', required: true, minlength: 8 });
  const msg = h('p', { class: 'note', role: 'status' });
  show(h('form', { class: 'login', onsubmit: async (e) => {
    e.preventDefault();
    try {
      await api('/api/me/password', { method: 'POST', body: JSON.stringify({ old_password: old.value, new_password: pw.value }) });
      old.value = ''; pw.value = '';
      msg.textContent = t('passwordChanged');
    } catch (x) {
      msg.textContent = x.message;
    }
  } }, h('h1', {}, t('changePassword')), h('label', {}, t('oldPassword'), old), h('label', {}, t('newPassword'), pw),
  h('button', { type: 'submit' }, t('changePassword')), msg, h('button', { type: 'button', onclick: () => boot() }, t('back'))));
  old.focus();
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
  // filters: the reader narrows the queue by site, modality and priority, or to their own claims
  const filters = { site: h('select', { name: 'site' }), modality: h('select', { name: 'modality' }), priority: h('select', { name: 'priority' }), mine: h('input', { type: 'checkbox', name: 'mine' }) };
  let last = [];
  const options = (sel, values, label) => {
    const keep = sel.value;
    sel.replaceChildren(h('option', { value: '' }, `${label}: ${t('all')}`), ...values.map((v) => h('option', { value: v }, t(v))));
    sel.value = values.includes(keep) ? keep : '';
  };
  const render = (all) => {
    last = all;
    options(filters.site, [...new Set(all.map((i) => i.site_name))].sort(), t('site'));
    options(filters.modality, [...new Set(all.flatMap((i) => i.modalities.split(/[\\,]/)).filter(Boolean))].sort(), t('modality'));
    options(filters.priority, ['stat', 'urgent', 'routine'], t('priority'));
    const items = all.filter((i) => (!filters.site.value || i.site_name === filters.site.value)
      && (!filters.modality.value || i.modalities.split(/[\\,]/).includes(filters.modality.value))
      && (!filters.priority.value || i.priority === filters.priority.value)
      && (!filters.mine.checked || i.claimed_by === me.id));
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
        h('td', {}, mine || isAdmin ? h('button', { onclick: () => itemView(it.id) }, t('open')) : ''));
    }));
  };
  // an admin (or supervisor's desk) looks at any pool's queue, read-only
  const isAdmin = me.role === 'admin';
  const poolSel = isAdmin ? h('select', { name: 'pool' }) : null;
  if (poolSel) {
    const pools = await api('/api/admin/pools').catch(() => []);
    poolSel.append(...pools.map((p) => h('option', { value: p.id }, `${t('pool')}: ${p.name}`)));
  }
  const refresh = async () => {
    try {
      render(await api(`/api/worklist?limit=200${poolSel ? `&pool=${poolSel.value}` : ''}`));
    } catch (x) {
      if (x.status === 401) return loginView();
      note.textContent = x.message;
    }
  };
  show(h('section', {},
    h('h2', {}, t('worklist'), ' ', isAdmin ? h('button', { type: 'button', onclick: () => adminView() }, t('admin')) : h('button', { id: 'claim-next', onclick: claimNext }, t('claimNext'))),
    h('div', { class: 'filters' }, poolSel || '', filters.site, filters.modality, filters.priority, isAdmin ? '' : h('label', {}, filters.mine, t('mine'))),
    note,
    h('table', { class: 'worklist' },
      h('thead', {}, h('tr', {}, ...['priority', 'state', 'site', 'patient', 'modality', 'arrived', 'deadline', ''].map((k) => h('th', {}, k ? t(k) : '')))),
      tbody)));
  for (const f of Object.values(filters)) f.addEventListener('change', () => render(last));
  poolSel?.addEventListener('change', refresh);
  await refresh();
  timers.push(setInterval(refresh, 5000));
  timers.push(setInterval(() => {
    for (const td of tbody.querySelectorAll('td.sla[data-deadline]')) {
      if (td.dataset.deadline && !td.parentElement.classList.contains('breached')) td.textContent = slaText(Number(td.dataset.deadline));
    }
  }, 1000));
  document.onkeydown = (e) => {
    if (!isAdmin && (e.key === 'n' || e.key === 'N') && !e.target.closest('input, textarea')) claimNext();
  };
}

// ---- reader: one study ----------------------------------------------------------------
const isWaveform = (sopClass) => String(sopClass || '').startsWith('1.2.840.10008.5.1.4.1.1.9.');

/** The images of a study: series thumbnails, a viewport with its toolbar, measurements.
 * With a `hint` (an instance the worklist item already listed) the film's preview and its
 * series start at once, in parallel with the thumbnails: fewer round trips before the
 * reader sees something on a slow line. */
function imagePane(studyUid, { prior = false, hint = null } = {}) {
  const vp = new Viewport({ lang: () => lang, prior });
  let strip = h('div', { class: 'series-strip' });
  const pane = h('div', { class: `image-pane${prior ? ' prior' : ''}` }, strip, toolbar(vp, () => lang), vp.el, vp.list);
  let opened = null;
  const open = (uid) => {
    opened = uid;
    vp.loadSeries(studyUid, uid).catch((x) => { vp.corners[3].textContent = x.message; });
  };
  if (hint) {
    vp.earlyPreview(hint);
    open(hint.series_instance_uid);
  }
  seriesStrip(studyUid, open).then(({ strip: real, series }) => {
    strip.replaceWith(real);
    strip = real;
    const first = series.find((x) => x.uid === opened) || series.find((x) => !['SR', 'PR', 'KO', 'ECG', 'DOC'].includes(x.modality)) || series[0];
    first?.first?.classList.add('on');
    if (!opened && first) open(first.uid);
  }).catch((x) => { vp.corners[3].textContent = x.message; });
  return { pane, vp };
}

/** The instance a study opens on: the first one with pixels (not a report or a state). */
const firstImage = (instances) => instances.find((i) => i.rows && i.columns && !/^1\.2\.840\.10008\.5\.1\.4\.1\.1\.(88|11|59|104)\./.test(i.sop_class_uid));

/** The request (申请单) beside the images: what the requesting doctor asks the reader. */
function orderBox(o) {
  const row = (k, v) => (v ? h('div', {}, h('dt', {}, t(k)), h('dd', {}, v)) : '');
  return h('details', { class: 'order', open: true, id: 'order' },
    h('summary', {}, `${t('order')} · ${o.accession_number}`),
    h('dl', {},
      row('clinicalQuestion', o.clinical_question),
      row('clinicalHistory', o.clinical_history),
      row('procedure', o.procedure_description || o.procedure_code),
      row('requestedBy', [personName(o.requesting_physician), o.requesting_department].filter(Boolean).join(' · '))));
}

async function itemView(id) {
  const templatesLater = api(`/api/report-templates?item=${id}`).catch(() => []);
  const data = await api(`/api/worklist/${id}`);
  const { item, instances } = data;
  const report = data.report || {};
  const mineClaimed = item.state === 'claimed' && item.claimed_by === me.id;
  const findings = h('textarea', { name: 'findings', rows: 8, readonly: !mineClaimed && item.state !== 'preliminary' }, report.findings || '');
  const impression = h('textarea', { name: 'impression', rows: 4, readonly: !mineClaimed && item.state !== 'preliminary' }, report.impression || '');
  const statusText = { final: t('signed'), preliminary: t('preliminary'), draft: t('saved') }[report.status] || '';
  const status = h('p', { class: 'note', role: 'status', id: 'report-status' }, statusText);
  const fail = (x) => { status.textContent = x.message; };
  const save = async () => api(`/api/worklist/${id}/report`, { method: 'PUT', body: JSON.stringify({ findings: findings.value, impression: impression.value }) });
  const templates = await templatesLater;
  const picker = h('select', { name: 'template', onchange: () => {
    const tpl = templates.find((x) => x.id === picker.value);
    if (!tpl) return;
    findings.value = lang === 'zh' ? tpl.findings_zh : tpl.findings_en;
    impression.value = lang === 'zh' ? tpl.impression_zh : tpl.impression_en;
  } }, h('option', { value: '' }, `${t('template')}…`), ...templates.map((x) => h('option', { value: x.id }, lang === 'zh' ? x.name_zh : x.name_en)));
  // after any step that changes the item, draw it again from the server's state
  const step = (fn, done) => async () => {
    try { await fn(); await itemView(id); if (done) document.getElementById('report-status').textContent = done; } catch (x) { fail(x); }
  };
  const buttons = [];
  const extra = [];
  if (mineClaimed) {
    buttons.push(
      h('button', { type: 'button', id: 'save-draft', onclick: async () => { try { await save(); status.textContent = t('saved'); } catch (x) { fail(x); } } }, t('saveDraft')),
      h('button', { type: 'button', id: 'submit', onclick: step(async () => { await save(); await api(`/api/worklist/${id}/report/submit`, { method: 'POST' }); }) }, t('submit')),
      h('button', { type: 'button', id: 'sign', class: 'primary', onclick: step(async () => { await save(); await api(`/api/worklist/${id}/report/sign`, { method: 'POST' }); }) }, t('sign')),
      h('button', { type: 'button', onclick: async () => { await api(`/api/worklist/${id}/release`, { method: 'POST' }).catch(fail); worklistView(); } }, t('release')),
    );
    const reason = h('select', { name: 'reject-reason' }, ...['positioning', 'exposure', 'motion', 'artefact', 'wrong_patient_or_part', 'incomplete'].map((r) => h('option', { value: r }, t(r))));
    const note = h('input', { name: 'reject-note', placeholder: t('rejectNote') });
    extra.push(h('details', { class: 'reject' }, h('summary', {}, t('reject')), reason, note,
      h('button', { type: 'button', id: 'reject', onclick: async () => {
        try { await api(`/api/worklist/${id}/reject`, { method: 'POST', body: JSON.stringify({ reason: reason.value, note: note.value }) }); worklistView(); } catch (x) { fail(x); }
      } }, t('reject'))));
  }
  if (item.state === 'preliminary') {
    const note = h('input', { name: 'send-back-note', placeholder: t('note') });
    buttons.push(
      h('button', { type: 'button', id: 'sign', class: 'primary', onclick: step(async () => {
        await api(`/api/worklist/${id}/report/preliminary`, { method: 'PUT', body: JSON.stringify({ findings: findings.value, impression: impression.value }) });
        await api(`/api/worklist/${id}/report/sign`, { method: 'POST' });
      }) }, t('sign')),
      note, h('button', { type: 'button', onclick: step(() => api(`/api/worklist/${id}/report/send-back`, { method: 'POST', body: JSON.stringify({ note: note.value }) })) }, t('sendBack')));
  }
  if (mineClaimed || item.state === 'preliminary' || item.state === 'reported') {
    const finding = h('input', { name: 'critical-finding', placeholder: t('criticalFinding') });
    extra.push(h('details', { class: 'critical' }, h('summary', {}, t('critical')), finding,
      h('button', { type: 'button', id: 'flag-critical', onclick: async () => {
        try { await api(`/api/worklist/${id}/critical`, { method: 'POST', body: JSON.stringify({ finding: finding.value }) }); status.textContent = t('flagged'); } catch (x) { fail(x); }
      } }, t('flagCritical'))));
  }
  if (report.status === 'final') {
    const text = h('textarea', { name: 'addendum', rows: 3 });
    extra.push(h('details', { class: 'addendum' }, h('summary', {}, t('addendum')), text,
      h('button', { type: 'button', onclick: step(() => api(`/api/worklist/${id}/report/addendum`, { method: 'POST', body: JSON.stringify({ text: text.value }) }), t('signed')) }, t('addAddendum'))));
  }
  const addenda = (report.addenda || []).map((a) => h('p', { class: 'addendum-text' }, `${t('addendum')} · ${a.author} · ${fmtTime(a.signed_at)}: ${a.text}`));

  // the images (or the ECG) beside the report
  const images = h('div', { class: 'images' });
  let vp = null, ecg = null, compare = null;
  const waveform = instances.find((i) => isWaveform(i.sop_class_uid));
  const ecgBox = h('div', { class: 'ecg-report' });
  if (waveform) {
    ecg = new EcgViewer(`/api/waveforms/${waveform.study_instance_uid}/${waveform.series_instance_uid}/${waveform.sop_instance_uid}`, { lang: () => lang });
    images.append(ecg.el);
    if (['reader', 'admin'].includes(me.role)) {
      ecgBox.append(suggestionsPanel({ id, lang: () => lang, api, canDecide: me.role === 'reader', onChange: () => {} }));
    }
    const editable = mineClaimed || item.state === 'preliminary';
    ecg.load().then(async (wf) => {
      if (!wf) return;
      // serial comparison: the patient's latest earlier ECG under this one, on the same paper
      let prior = null;
      const priors = await api(`/api/worklist/${id}/priors`).catch(() => []);
      // the latest ECG of the patient not after this one (priors come newest first)
      const p = priors.find((x) => String(x.modalities || '').split('\\').includes('ECG') && !(item.study_date && x.study_date && x.study_date > item.study_date));
      if (p) {
        const list = await api(`/dicom-web/studies/${p.study_instance_uid}/instances`).catch(() => []);
        const w = list.find((i) => isWaveform(i['00080016']?.Value?.[0]));
        if (w) {
          const uid = (tag) => w[tag]?.Value?.[0];
          const pwf = await ecg.addPrior(`/api/waveforms/${p.study_instance_uid}/${uid('0020000E')}/${uid('00080018')}`, fmtDate(p.study_date));
          if (pwf) prior = { wf: pwf, title: fmtDate(p.study_date) };
        }
      }
      ecgBox.append(ecgForm({ wf, prior, lang: () => lang, findings, impression, editable }));
    }).catch((x) => { images.append(h('p', { class: 'error' }, x.message)); });
  } else {
    const main = imagePane(item.study_instance_uid, { hint: firstImage(instances) });
    vp = main.vp;
    images.append(main.pane);
  }
  // the patient's priors, their reports one click away, and side by side on request
  const priorsBox = h('details', { class: 'priors', id: 'priors' }, h('summary', {}, t('priors')));
  api(`/api/worklist/${id}/priors`).then((priors) => {
    priorsBox.querySelector('summary').textContent = `${t('priors')} (${priors.length})`;
    if (!priors.length) priorsBox.append(h('p', { class: 'note' }, t('noPriors')));
    for (const p of priors) {
      priorsBox.append(h('div', { class: 'prior' },
        h('b', {}, `${p.study_date || ''} ${p.modalities} ${p.study_description || ''}`),
        h('p', {}, p.impression || '—'),
        waveform ? '' : h('button', { type: 'button', class: 'compare', onclick: async () => {
          if (compare) compare.pane.remove();
          compare = imagePane(p.study_instance_uid, { prior: true });
          images.classList.add('split');
          images.append(compare.pane);
        } }, t('compare'))));
    }
  }).catch(() => {});
  show(h('section', { class: 'reading' },
    images,
    h('form', { class: 'report', onsubmit: (e) => e.preventDefault() },
      h('h2', {}, `${personName(item.patient_name)} · ${item.patient_id} · ${item.modalities} · ${item.site_name}`),
      h('p', { class: `prio-${item.priority}` }, `${t(item.priority)} · ${t(item.state)} · ${t('deadline')} ${fmtTime(item.deadline_at)}`),
      report.returned_note ? h('p', { class: 'error' }, `${t('sendBack')}: ${report.returned_note}`) : '',
      data.order ? orderBox(data.order) : '',
      mineClaimed ? picker : '',
      ecgBox,
      h('label', {}, t(waveform ? 'ecgFindings' : 'findings'), findings), h('label', {}, t(waveform ? 'ecgImpression' : 'impression'), impression),
      ...addenda,
      h('div', { class: 'buttons' }, ...buttons, h('button', { type: 'button', onclick: () => worklistView() }, t('back'))),
      ...extra, priorsBox, status)));
  document.onkeydown = (e) => {
    if (e.target.closest('input, textarea, select')) return;
    if (ecg ? handleEcgKey(ecg, e) : handleKey(vp, e)) e.preventDefault();
  };
}

// ---- referrer: the site's reports ---------------------------------------------------------
/** The latest search of the reports: an earlier one answered late must not replace it. */
let reportsSearch = 0;
async function reportsView(query = {}) {
  const mine = ++reportsSearch;
  const q = h('input', { name: 'q', placeholder: `${t('patient')} / ID`, value: query.q || '' });
  const from = h('input', { name: 'from', type: 'date', value: query.from || '' });
  const to = h('input', { name: 'to', type: 'date', value: query.to || '' });
  const note = h('p', { class: 'note', role: 'status' });
  const params = new URLSearchParams(Object.entries(query).filter(([, v]) => v));
  let reports = [], critical = [];
  try {
    [reports, critical] = await Promise.all([api(`/api/reports?${params}`), api('/api/critical').catch(() => [])]);
  } catch (x) { note.textContent = x.message; }
  if (mine !== reportsSearch) return;
  // what the critical result is, not only that there is one
  const findings = new Map();
  for (const c of critical) findings.set(c.item_id, [...(findings.get(c.item_id) || []), c]);
  const ack = (r) => async (e) => {
    try { await api(`/api/critical/${r.open_critical_id}/ack`, { method: 'POST' }); e.target.replaceWith(h('span', { class: 'tag' }, t('acknowledged'))); } catch (x) { note.textContent = x.message; }
  };
  show(h('section', {}, h('h2', {}, t('reports'), me.role === 'admin' ? [' ', h('button', { type: 'button', onclick: () => adminView() }, t('admin'))] : ''),
    h('form', { class: 'search', onsubmit: (e) => { e.preventDefault(); reportsView({ q: q.value, from: from.value, to: to.value }); } },
      q, h('label', {}, t('from'), from), h('label', {}, t('to'), to), h('button', { type: 'submit' }, t('search'))),
    note,
    reports.length ? h('table', { class: 'reports' },
      h('thead', {}, h('tr', {}, ...['patient', 'modality', 'impression', 'signed', ''].map((k) => h('th', {}, k ? t(k) : '')))),
      h('tbody', {}, ...reports.map((r) => h('tr', { 'data-report': r.id, class: `${r.delivered_at ? '' : 'unread'}${r.open_critical_id ? ' critical' : ''}` },
        h('td', {}, `${personName(r.patient_name)} (${r.patient_id})`, r.delivered_at ? '' : h('span', { class: 'tag' }, t('unread'))),
        h('td', {}, `${r.modalities} ${r.study_date || ''}`),
        h('td', { class: 'impression' }, r.impression, r.corrected ? h('span', { class: 'tag' }, t('corrected')) : '',
          ...(findings.get(r.item_id) || []).map((c) => h('p', { class: 'critical-finding' }, h('span', { class: 'tag critical' }, t('critical')), ` ${c.finding}`,
            c.acknowledged_at ? h('span', { class: 'note' }, ` · ${t('acknowledged')} ${c.acknowledged_by_name || ''} ${fmtTime(c.acknowledged_at)}`) : ''))),
        h('td', {}, fmtTime(r.signed_at)),
        h('td', { class: 'actions' },
          r.open_critical_id ? h('button', { type: 'button', class: 'ack', onclick: ack(r) }, t('acknowledge')) : '',
          h('a', { href: `/api/reports/${r.id}/print`, target: '_blank', class: 'print' }, t('print')), ' ',
          h('a', { href: `/api/reports/${r.id}/pdf`, target: '_blank', class: 'pdf' }, t('pdf')))))))
      : h('p', { class: 'note' }, t('noReports'))));
}

// ---- technician: upload, and what became of the site's studies ----------------------------------
/** Every file under a dropped folder (DataTransfer entries, read recursively). */
async function filesOf(dataTransfer) {
  const out = [];
  const walk = async (entry, path) => {
    if (entry.isFile) {
      const f = await new Promise((res, rej) => entry.file(res, rej));
      out.push({ file: f, path: path + f.name });
    } else if (entry.isDirectory) {
      const reader = entry.createReader();
      for (;;) {
        const batch = await new Promise((res, rej) => reader.readEntries(res, rej));
        if (!batch.length) break;
        for (const e of batch) await walk(e, `${path}${entry.name}/`);
      }
    }
  };
  const entries = [...dataTransfer.items].map((i) => i.webkitGetAsEntry?.()).filter(Boolean);
  if (entries.length) for (const e of entries) await walk(e, '');
  else for (const f of dataTransfer.files) out.push({ file: f, path: f.name });
  return out;
}

/** STOW-RS one file: a multipart/related body, with upload progress (XHR has it, fetch not). */
function stowOne(file, onProgress) {
  return new Promise((resolve) => {
    const boundary = `readhub-${Math.random().toString(16).slice(2)}`;
    const body = new Blob([`--${boundary}\r\nContent-Type: application/dicom\r\n\r\n`, file, `\r\n--${boundary}--\r\n`]);
    const xhr = new XMLHttpRequest();
    xhr.open('POST', '/dicom-web/studies');
    xhr.setRequestHeader('content-type', `multipart/related; type="application/dicom"; boundary=${boundary}`);
    xhr.setRequestHeader('accept', 'application/dicom+json');
    xhr.setRequestHeader('x-requested-with', 'readhub-viewer');
    xhr.upload.onprogress = (e) => { if (e.lengthComputable) onProgress(e.loaded / e.total); };
    xhr.onload = () => {
      let json = null;
      try { json = JSON.parse(xhr.responseText); } catch { /* not JSON */ }
      const failed = json?.['00081198']?.Value?.[0];
      if (xhr.status === 200 || (xhr.status === 202 && !failed)) resolve({ ok: true });
      else resolve({ ok: false, reason: failed?.['00000902']?.Value?.[0] || json?.error || `HTTP ${xhr.status}` });
    };
    xhr.onerror = () => resolve({ ok: false, reason: 'network error / 网络错误' });
    xhr.send(body);
  });
}

/** An ECG file (HL7 aECG, Philips XML, SCP-ECG) to `POST /api/ecg`, with progress. */
function ecgOne(file, onProgress) {
  return new Promise((resolve) => {
    const xhr = new XMLHttpRequest();
    xhr.open('POST', '/api/ecg');
    xhr.setRequestHeader('content-type', 'application/octet-stream');
    xhr.setRequestHeader('x-file-name', encodeURIComponent(file.name));
    xhr.setRequestHeader('x-requested-with', 'readhub-viewer');
    xhr.upload.onprogress = (e) => { if (e.lengthComputable) onProgress(e.loaded / e.total); };
    xhr.onload = () => {
      let json = null;
      try { json = JSON.parse(xhr.responseText); } catch { /* not JSON */ }
      if (xhr.status === 200 || xhr.status === 201) resolve({ ok: true, note: json?.format });
      else resolve({ ok: false, reason: json?.error || `HTTP ${xhr.status}` });
    };
    xhr.onerror = () => resolve({ ok: false, reason: 'network error / 网络错误' });
    xhr.send(file);
  });
}

/** Whether the first bytes look like an ECG file readhub reads: XML (any encoding) or SCP-ECG. */
function looksLikeEcg(head) {
  if (head.length >= 22 && String.fromCharCode(...head.slice(16, 22)) === 'SCPECG') return true;
  let i = 0;
  if (head[0] === 0xef && head[1] === 0xbb && head[2] === 0xbf) i = 3;
  if ((head[0] === 0xff && head[1] === 0xfe) || (head[0] === 0xfe && head[1] === 0xff)) return true;
  while (i < head.length && [0x20, 0x09, 0x0a, 0x0d].includes(head[i])) i++;
  return head[i] === 0x3c; // '<'
}

function uploadPanel(onDone) {
  const rows = h('tbody');
  const summary = h('p', { class: 'note', role: 'status', id: 'upload-summary' });
  const run = async (list) => {
    const jobs = list.map(({ file, path }) => {
      const bar = h('progress', { max: 1, value: 0 });
      const result = h('td', { class: 'result' }, '');
      const tr = h('tr', { 'data-file': path }, h('td', {}, path), h('td', {}, `${(file.size / 1024).toFixed(0)} KB`), h('td', {}, bar), result);
      rows.append(tr);
      return { file, path, bar, result, tr };
    });
    let stored = 0, refused = 0;
    const next = async () => {
      for (let job = jobs.shift(); job; job = jobs.shift()) {
        // a file without the Part 10 "DICM" marker is refused here, before it costs the
        // clinic's slow line anything; the server checks everything else
        const head = new Uint8Array(await job.file.slice(0, 132).arrayBuffer());
        let res;
        if (head.length >= 132 && String.fromCharCode(...head.slice(128, 132)) === 'DICM') {
          job.result.textContent = t('uploading');
          res = await stowOne(job.file, (f) => { job.bar.value = f; });
        } else if (looksLikeEcg(head)) {
          // an ECG cart's file: the hub makes a DICOM ECG of it
          job.result.textContent = t('uploading');
          res = await ecgOne(job.file, (f) => { job.bar.value = f; });
        } else res = { ok: false, reason: t('notDicom') };
        job.bar.value = res.ok ? 1 : job.bar.value;
        job.tr.dataset.state = res.ok ? 'stored' : 'refused';
        job.result.textContent = res.ok ? `${t('stored')}${res.note ? ` (${res.note})` : ''}` : `${t('refused')}: ${res.reason}`;
        if (res.ok) stored++; else refused++;
        summary.textContent = `${t('stored')} ${stored} · ${t('refused')} ${refused}`;
      }
    };
    await Promise.all([next(), next()]); // two at a time: a slow line stays busy, not flooded
    summary.dataset.done = '1';
    onDone();
  };
  const files = h('input', { type: 'file', multiple: true, name: 'files', onchange: (e) => run([...e.target.files].map((f) => ({ file: f, path: f.name }))) });
  const folder = h('input', { type: 'file', multiple: true, webkitdirectory: true, name: 'folder', onchange: (e) => run([...e.target.files].map((f) => ({ file: f, path: f.webkitRelativePath || f.name }))) });
  const zone = h('div', { class: 'dropzone', id: 'dropzone',
    ondragover: (e) => { e.preventDefault(); zone.classList.add('over'); },
    ondragleave: () => zone.classList.remove('over'),
    ondrop: async (e) => { e.preventDefault(); zone.classList.remove('over'); run(await filesOf(e.dataTransfer)); } },
  t('dropHere'), h('div', {}, h('label', {}, t('chooseFiles'), ' ', files), ' ', h('label', {}, t('chooseFolder'), ' ', folder)));
  return h('section', { class: 'upload' }, h('h2', {}, t('upload')), zone,
    h('table', { class: 'uploads' }, h('thead', {}, h('tr', {}, ...['file', 'size', 'progress', 'result'].map((k) => h('th', {}, t(k))))), rows), summary);
}

/** The site's orders (检查申请) and, for a technician, the 登记 form of a site without a HIS:
 * the order goes on the modality worklist, so the modality does not retype the patient. */
function ordersPanel() {
  const tbody = h('tbody');
  const note = h('p', { class: 'note', role: 'status', id: 'order-status' });
  const refresh = async () => {
    const orders = await api('/api/orders?limit=50');
    tbody.replaceChildren(...orders.map((o) => h('tr', { 'data-order': o.id, class: `order-${o.state}` },
      h('td', {}, o.accession_number), h('td', {}, `${personName(o.patient.name)} (${o.patient.id})`), h('td', {}, o.modality),
      h('td', {}, o.procedure_description), h('td', { class: `prio-${o.priority}` }, t(o.priority)), h('td', {}, fmtTime(o.scheduled_at)),
      h('td', { class: 'state' }, o.overdue_at && o.state === 'scheduled' ? t('overdue') : { scheduled: t('scheduledState'), arrived: t('arrivedState'), cancelled: t('cancelled') }[o.state]),
      h('td', {}, me.role === 'technician' && o.state === 'scheduled'
        ? h('button', { type: 'button', onclick: async () => {
          try { await api(`/api/orders/${o.id}/cancel`, { method: 'POST' }); refresh(); } catch (x) { note.textContent = x.message; }
        } }, t('cancel')) : ''))));
  };
  const field = (name, label, attrs = {}) => h('label', {}, t(label), h('input', { name, ...attrs }));
  const form = h('form', { class: 'register', id: 'register' },
    field('accession_number', 'accession', { required: true, maxlength: 16 }),
    field('patient_id', 'patientId', { required: true, maxlength: 64 }),
    field('patient_name', 'patient', { maxlength: 64 }),
    h('label', {}, t('sex'), h('select', { name: 'sex' }, ...['', 'M', 'F', 'O'].map((v) => h('option', { value: v }, v)))),
    field('birth_date', 'birthDate', { placeholder: 'YYYYMMDD', pattern: '\\d{8}', maxlength: 8 }),
    field('modality', 'modality', { required: true, value: 'DX', maxlength: 16 }),
    field('procedure_description', 'procedure', { maxlength: 64 }),
    h('label', {}, t('priority'), h('select', { name: 'priority' }, ...['routine', 'urgent', 'stat'].map((v) => h('option', { value: v }, t(v))))),
    h('label', {}, t('clinicalHistory'), h('textarea', { name: 'clinical_history', rows: 2 })),
    h('label', {}, t('clinicalQuestion'), h('textarea', { name: 'clinical_question', rows: 2 })),
    h('button', { type: 'submit', class: 'primary' }, t('register')));
  form.onsubmit = async (e) => {
    e.preventDefault();
    const v = Object.fromEntries(new FormData(form));
    const body = {
      accession_number: v.accession_number, modality: v.modality, priority: v.priority,
      procedure_description: v.procedure_description, clinical_history: v.clinical_history, clinical_question: v.clinical_question,
      patient: { id: v.patient_id, name: v.patient_name, sex: v.sex, birth_date: v.birth_date },
    };
    try {
      await api('/api/orders', { method: 'POST', body: JSON.stringify(body) });
      note.textContent = `${t('register')} ✓ ${v.accession_number}`;
      form.reset();
      refresh();
    } catch (x) { note.textContent = x.message; }
  };
  refresh().catch(() => {});
  return h('section', { class: 'orders' }, h('h2', {}, t('orders')),
    me.role === 'technician' ? h('details', {}, h('summary', {}, t('register')), form) : '', note,
    h('table', { class: 'orders' },
      h('thead', {}, h('tr', {}, ...['accession', 'patient', 'modality', 'procedure', 'priority', 'scheduled', 'state', ''].map((k) => h('th', {}, k ? t(k) : '')))),
      tbody));
}

async function siteStudiesView() {
  const tbody = h('tbody');
  const note = h('p', { class: 'note', role: 'status' });
  const refresh = async () => {
    const items = await api('/api/site/studies');
    tbody.replaceChildren(...items.map((it) => h('tr', { class: `state-${it.state} prio-${it.priority}`, 'data-item': it.id },
      h('td', { class: 'prio' }, t(it.priority)),
      h('td', {}, `${personName(it.patient_name)} (${it.patient_id})`), h('td', {}, it.modalities), h('td', {}, fmtTime(it.arrived_at)),
      h('td', { class: 'state' }, t(it.state)), h('td', {}, it.rejected_reason ? `${t(it.rejected_reason)} ${it.rejected_note || ''}` : ''),
      h('td', {}, me.role === 'technician' && it.priority !== 'stat' && ['receiving', 'ready', 'claimed'].includes(it.state)
        ? h('button', { type: 'button', class: 'stat', onclick: async () => {
          try { await api(`/api/worklist/${it.id}/priority`, { method: 'POST', body: JSON.stringify({ priority: 'stat' }) }); refresh(); } catch (x) { note.textContent = x.message; }
        } }, t('flagStat')) : ''))));
  };
  show(uploadPanel(() => refresh().catch(() => {})), ordersPanel(),
    h('section', {}, h('h2', {}, t('studies')), note,
      h('table', { class: 'studies' },
        h('thead', {}, h('tr', {}, ...['priority', 'patient', 'modality', 'arrived', 'state', 'reason', ''].map((k) => h('th', {}, k ? t(k) : '')))),
        tbody)));
  await refresh();
  timers.push(setInterval(() => refresh().catch(() => {}), 10000));
}

// ---- admin: directory, routing, SLA, turnaround ------------------------------------------------
function table(cols, rows) {
  return h('table', {}, h('thead', {}, h('tr', {}, ...cols.map(([k]) => h('th', {}, t(k))))),
    h('tbody', {}, ...rows.map((r) => h('tr', {}, ...cols.map(([, f]) => h('td', {}, f(r)))))));
}

/** A bar chart (SVG) of reported studies and p90 per group. */
function turnaroundChart(rows) {
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  const w = 640, bar = 22, hgt = rows.length * (bar + 6) + 10;
  svg.setAttribute('viewBox', `0 0 ${w} ${hgt}`);
  svg.setAttribute('class', 'chart');
  const max = Math.max(1, ...rows.map((r) => r.arrived));
  rows.forEach((r, i) => {
    const y = 5 + i * (bar + 6);
    const mk = (tag, attrs, text) => { const e = document.createElementNS(ns, tag); for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v); if (text) e.textContent = text; svg.append(e); };
    mk('text', { x: 0, y: y + 15, fill: '#e8eaed', 'font-size': 12 }, r.group);
    mk('rect', { x: 160, y, width: (r.arrived / max) * 300, height: bar, fill: '#3a424e' });
    mk('rect', { x: 160, y, width: (r.reported / max) * 300, height: bar, fill: '#1e8e3e' });
    mk('text', { x: 470, y: y + 15, fill: '#e8eaed', 'font-size': 12 }, `${r.reported}/${r.arrived} · p50 ${r.p50_minutes?.toFixed(1) ?? '–'} · p90 ${r.p90_minutes?.toFixed(1) ?? '–'} min`);
  });
  return svg;
}

async function adminView(tab = 'turnaround') {
  const tabs = ['turnaround', 'worklist', 'sites', 'pools', 'users', 'rules', 'results', 'audit', 'reports'];
  const screens = { reports: () => reportsView(), worklist: () => worklistView() };
  const nav = h('nav', { class: 'tabs' }, ...tabs.map((k) => h('button', { type: 'button', class: k === tab ? 'on' : '', 'data-tab': k, onclick: () => (screens[k] || (() => adminView(k)))() }, t(k))));
  const note = h('p', { class: 'note', role: 'status' });
  const body = h('div', { class: 'admin' });
  const guard = (fn) => async (e) => { e.preventDefault(); try { await fn(); adminView(tab); } catch (x) { note.textContent = x.message; } };
  show(h('section', {}, h('h2', {}, t('admin')), nav, note, body));
  try {
    if (tab === 'turnaround') {
      const day = (d) => d.toISOString().slice(0, 10);
      const from = h('input', { type: 'date', name: 'from', value: day(new Date(Date.now() - 30 * 864e5)) });
      const to = h('input', { type: 'date', name: 'to', value: day(new Date()) });
      const by = h('select', { name: 'by' }, ...['site', 'pool', 'reader', 'day'].map((k) => h('option', { value: k }, t(k === 'site' ? 'site' : k))));
      const out = h('div');
      const load = async () => {
        const rows = await api(`/api/stats/turnaround?from=${from.value}&to=${to.value}&by=${by.value}`);
        out.replaceChildren(turnaroundChart(rows), table([['name', (r) => r.group], ['arrivedN', (r) => r.arrived], ['reportedN', (r) => r.reported], ['breachedN', (r) => r.breached], ['rejectedN', (r) => r.rejected], ['p50', (r) => r.p50_minutes?.toFixed(1) ?? ''], ['p90', (r) => r.p90_minutes?.toFixed(1) ?? '']], rows));
      };
      body.append(h('form', { class: 'search', onsubmit: (e) => { e.preventDefault(); load().catch((x) => { note.textContent = x.message; }); } }, h('label', {}, t('from'), from), h('label', {}, t('to'), to), h('label', {}, t('by'), by), h('button', { type: 'submit' }, t('search'))), out);
      await load();
    } else if (tab === 'sites') {
      const sites = await api('/api/admin/sites');
      const name = h('input', { name: 'name', required: true }), aes = h('input', { name: 'ae_titles', placeholder: 'AE1,AE2' }), cons = h('input', { name: 'consortium' });
      const site = (s) => encodeURIComponent(s.name);
      const aeCell = (s) => h('span', {}, ...s.ae_titles.map((ae) => h('span', { class: 'ae' }, ae, ' ',
        h('button', { type: 'button', class: 'remove-ae', 'data-ae': ae, title: t('remove'), onclick: guard(() => api(`/api/admin/sites/${site(s)}/ae-titles/${encodeURIComponent(ae)}`, { method: 'DELETE' })) }, '✕'), ' ')));
      const renameButton = (s) => h('button', { type: 'button', class: 'rename', onclick: guard(async () => {
        const name = prompt(t('rename'), s.name);
        if (name && name !== s.name) await api(`/api/admin/sites/${site(s)}/name`, { method: 'PUT', body: JSON.stringify({ name }) });
      }) }, t('rename'));
      // a site bound to its modalities' client certificates takes DICOM over TLS from them only
      const certCell = (s) => h('span', {}, ...(s.certificates || []).map((fp) => h('span', { class: 'cert', title: fp }, `${fp.slice(0, 12)}…`, ' ',
        h('button', { type: 'button', class: 'unbind-cert', title: t('remove'), onclick: guard(() => api(`/api/admin/sites/${site(s)}/certificates/${fp}`, { method: 'DELETE' })) }, '✕'), ' ')),
        h('button', { type: 'button', class: 'bind-cert', onclick: guard(async () => {
          const fingerprint = prompt(t('bindCert'));
          if (fingerprint) await api(`/api/admin/sites/${site(s)}/certificates`, { method: 'POST', body: JSON.stringify({ fingerprint }) });
        }) }, '+'));
      // where the site's signed reports go (its HIS, FHIR server, PACS), as the API takes it
      const outboundButton = (s) => h('button', { type: 'button', class: 'outbound', onclick: guard(async () => {
        const now = await api(`/api/admin/sites/${site(s)}/outbound`);
        const text = prompt(t('outboundPrompt'), JSON.stringify(now));
        if (text !== null) await api(`/api/admin/sites/${site(s)}/outbound`, { method: 'PUT', body: text || '{}' });
      }) }, t('outbound'));
      const actions = (s) => h('span', {}, renameButton(s), ' ', outboundButton(s));
      body.append(table([['name', (s) => s.name], ['aeTitles', aeCell], ['certificates', certCell], ['consortium', (s) => s.consortium_id], ['actions', actions]], sites),
        h('form', { class: 'add', onsubmit: guard(() => api('/api/admin/sites', { method: 'POST', body: JSON.stringify({ name: name.value, ae_titles: aes.value.split(',').map((x) => x.trim()).filter(Boolean), consortium: cons.value || null }) })) },
          h('label', {}, t('name'), name), h('label', {}, t('aeTitles'), aes), h('label', {}, t('consortium'), cons), h('button', { type: 'submit' }, t('add'))));
    } else if (tab === 'results') {
      // the results outbox: what went to which site's HIS, FHIR server or PACS, what waits and why
      const state = h('select', { name: 'state' }, ...['', 'pending', 'failed', 'delivered'].map((k) => h('option', { value: k }, k ? t(`out_${k}`) : t('all'))));
      const out = h('div');
      const load = async () => {
        const rows = await api(`/api/admin/results${state.value ? `?state=${state.value}` : ''}`);
        out.replaceChildren(table([['time', (r) => fmtTime(r.created_at)], ['site', (r) => r.site_name], ['channel', (r) => r.channel.toUpperCase()],
          ['destination', (r) => r.destination], ['event', (r) => r.event], ['attempts', (r) => r.attempts],
          ['state', (r) => (r.delivered_at ? `${t('out_delivered')} ${fmtTime(r.delivered_at)}` : r.last_error ? t('out_failed') : t('out_pending'))],
          ['detail', (r) => r.last_error || '']], rows));
      };
      state.onchange = () => load().catch((x) => { note.textContent = x.message; });
      body.append(h('label', {}, t('state'), state), out);
      await load();
    } else if (tab === 'pools') {
      const pools = await api('/api/admin/pools');
      const name = h('input', { name: 'name', required: true }), kind = h('select', { name: 'kind' }, h('option', { value: 'imaging' }, 'imaging'), h('option', { value: 'ecg' }, 'ecg'));
      const sla = (p) => {
        const s = h('input', { type: 'number', min: 1, name: 'stat', placeholder: t('statMin') }), u = h('input', { type: 'number', min: 1, name: 'urgent', placeholder: t('urgentMin') }), r = h('input', { type: 'number', min: 1, name: 'routine', placeholder: t('routineMin') });
        return h('form', { class: 'inline', onsubmit: guard(() => api(`/api/admin/pools/${encodeURIComponent(p.name)}/sla`, { method: 'PUT', body: JSON.stringify({ stat_minutes: Number(s.value) || null, urgent_minutes: Number(u.value) || null, routine_minutes: Number(r.value) || null }) })) }, s, u, r, h('button', { type: 'submit' }, t('sla')));
      };
      body.append(table([['name', (p) => p.name], ['kind', (p) => p.kind], ['consortium', (p) => p.consortium_id], ['sla', sla]], pools),
        h('form', { class: 'add', onsubmit: guard(() => api('/api/admin/pools', { method: 'POST', body: JSON.stringify({ name: name.value, kind: kind.value }) })) }, h('label', {}, t('name'), name), h('label', {}, t('kind'), kind), h('button', { type: 'submit' }, t('add'))));
    } else if (tab === 'users') {
      const users = await api('/api/admin/users');
      const f = Object.fromEntries(['username', 'password', 'display_name', 'site', 'pool'].map((k) => [k, h('input', { name: k, type: k === 'password' ? 'password' : 'text' })]));
      const role = h('select', { name: 'role' }, ...['reader', 'referrer', 'technician', 'admin'].map((r) => h('option', { value: r }, r)));
      const who = (u) => encodeURIComponent(u.username);
      const userActions = (u) => h('span', { class: 'buttons' },
        h('button', { type: 'button', class: u.disabled ? 'enable' : 'disable', onclick: guard(() => api(`/api/admin/users/${who(u)}/disabled`, { method: 'PUT', body: JSON.stringify({ disabled: !u.disabled }) })) }, u.disabled ? t('enable') : t('disable')),
        h('button', { type: 'button', class: 'reset-password', onclick: guard(async () => {
          const password = prompt(`${t('resetPassword')}: ${u.username}`);
          if (password) await api(`/api/admin/users/${who(u)}/password`, { method: 'PUT', body: JSON.stringify({ password }) });
        }) }, t('resetPassword')));
      body.append(table([['username', (u) => u.username], ['display', (u) => u.display_name], ['role', (u) => u.role], ['site', (u) => u.site_id ?? ''], ['pool', (u) => u.pool_id ?? ''], ['modality', (u) => u.modalities.join(',')], ['state', (u) => (u.disabled ? t('disabled') : '')], ['actions', userActions]], users),
        h('form', { class: 'add', onsubmit: guard(() => api('/api/admin/users', { method: 'POST', body: JSON.stringify({ username: f.username.value, password: f.password.value, role: role.value, display_name: f.display_name.value || null, site: f.site.value || null, pool: f.pool.value || null }) })) },
          ...Object.entries(f).map(([k, el]) => h('label', {}, t(k === 'display_name' ? 'display' : k), el)), h('label', {}, t('role'), role), h('button', { type: 'submit' }, t('add'))));
    } else if (tab === 'audit') {
      // who read or changed which patient's data: filters, newest first, paged, exported
      const f = Object.fromEntries(['user', 'patient_id', 'study'].map((k) => [k, h('input', { name: k, type: 'text' })]));
      const action = h('select', { name: 'action' }, h('option', { value: '' }, t('all')), ...['login', 'logout', 'query', 'retrieve', 'frames', 'rendered', 'metadata', 'store', 'dicom_store', 'waveform', 'item_view', 'list_view', 'item_change', 'report_view', 'report_print', 'report_pdf', 'report_edit', 'report_sign', 'report_correct', 'critical_flag', 'critical_ack', 'user_change', 'site_change', 'settings_change', 'audit_read', 'other'].map((a) => h('option', { value: a }, a)));
      const from = h('input', { type: 'date', name: 'from' }), to = h('input', { type: 'date', name: 'to' });
      const params = () => new URLSearchParams(Object.entries({ user: f.user.value, patient_id: f.patient_id.value, study: f.study.value, action: action.value, from: from.value, to: to.value }).filter(([, v]) => v));
      const rows = h('tbody');
      const more = h('button', { type: 'button', hidden: true }, t('more'));
      const csv = h('a', { class: 'button', download: 'readhub-audit.csv' }, t('exportCsv'));
      const ndjson = h('a', { class: 'button', download: 'readhub-audit.ndjson' }, t('exportNdjson'));
      const when = (ms) => new Date(ms).toLocaleString(lang === 'zh' ? 'zh-CN' : 'en-GB');
      const load = async (before) => {
        const q = params();
        if (before) q.set('before', before);
        const page = await api(`/api/admin/audit?${q}`);
        if (!before) rows.replaceChildren();
        for (const e of page.entries) {
          rows.append(h('tr', { class: e.outcome === 'success' ? '' : 'breached' }, ...[when(e.at), e.username ?? '', e.role ?? '', e.site ?? e.pool ?? '', e.client ?? '', e.action, e.outcome, e.study_uid ?? '', [e.patient_id, e.patient_issuer].filter(Boolean).join(' / '), e.detail].map((v) => h('td', {}, v))));
        }
        more.hidden = !page.next_before;
        more.onclick = () => load(page.next_before).catch((x) => { note.textContent = x.message; });
        csv.href = `/api/admin/audit/export?format=csv&${params()}`;
        ndjson.href = `/api/admin/audit/export?format=ndjson&${params()}`;
      };
      const head = ['time', 'username', 'role', 'site', 'client', 'action', 'outcome', 'study', 'patient', 'detail'];
      body.append(h('form', { class: 'search', onsubmit: (e) => { e.preventDefault(); load().catch((x) => { note.textContent = x.message; }); } },
        h('label', {}, t('username'), f.user), h('label', {}, t('patientId'), f.patient_id), h('label', {}, t('study'), f.study), h('label', {}, t('action'), action),
        h('label', {}, t('from'), from), h('label', {}, t('to'), to), h('button', { type: 'submit' }, t('search')), csv, ndjson),
        h('table', { class: 'audit' }, h('thead', {}, h('tr', {}, ...head.map((k) => h('th', {}, t(k))))), rows), more);
      await load();
    } else if (tab === 'rules') {
      const set = await api('/api/admin/routing-rules');
      const text = h('textarea', { name: 'rules', rows: 18, class: 'code' }, JSON.stringify(set?.rules ?? [], null, 2));
      body.append(h('p', { class: 'note' }, set ? `v${set.version}` : ''), h('form', { onsubmit: guard(() => api('/api/admin/routing-rules', { method: 'PUT', body: text.value })) }, text, h('button', { type: 'submit' }, t('saveRules'))));
    }
  } catch (x) {
    note.textContent = x.message;
  }
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
    document.getElementById('password').hidden = true;
    document.getElementById('who').textContent = '';
    return loginView();
  }
  document.getElementById('who').textContent = `${me.display_name} · ${me.role}`;
  logout.hidden = false;
  logout.textContent = t('logout');
  const password = document.getElementById('password');
  password.hidden = false;
  password.textContent = t('changePassword');
  if (me.role === 'reader') return worklistView();
  if (me.role === 'referrer') return reportsView();
  if (me.role === 'technician') return siteStudiesView();
  return adminView();
}

document.getElementById('lang').addEventListener('click', () => {
  lang = lang === 'zh' ? 'en' : 'zh';
  localStorage.setItem('readhub.lang', lang);
  boot();
});
document.getElementById('password').addEventListener('click', () => passwordView());
document.getElementById('logout').addEventListener('click', async () => {
  await api('/api/logout', { method: 'POST' }).catch(() => {});
  boot();
});
boot();
