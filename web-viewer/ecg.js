// The ECG viewer: the samples (µV per lead, from /api/waveforms) drawn as SVG on the
// standard paper grid, in millimetres, so the paper speed and gain are exact at any zoom.
// Calipers read milliseconds, millivolts and the heart rate from the paper geometry.

const SVG = 'http://www.w3.org/2000/svg';
const LABELS = {
  zh: { speed: '走纸速度', gain: '增益', layout: '导联布局', caliper: '测量尺 (C)', clear: '清除', device: '设备测量', filters: '滤波', rhythm: '节律', noWaveform: '无法读取波形',
    measurements: '测量值', measure: '项目', computed: '本系统', deviceCol: '设备', differs: '与设备相差超过容差', statements: '设备诊断语句', original: '原始文件',
    current: '本次', prior: '前次', delta: '差值', priorEcg: '前次心电图', notMeasured: '无法测量',
    heart_rate: '心率 (次/分)', rr: 'RR (ms)', pr: 'PR (ms)', qrs: 'QRS (ms)', qt: 'QT (ms)', qtc_bazett: 'QTc Bazett (ms)', qtc_fridericia: 'QTc Fridericia (ms)', qrs_axis: 'QRS 电轴 (°)' },
  en: { speed: 'Speed', gain: 'Gain', layout: 'Layout', caliper: 'Calipers (C)', clear: 'Clear', device: 'Device measurements', filters: 'Filters', rhythm: 'Rhythm', noWaveform: 'Waveform unreadable',
    measurements: 'Measurements', measure: 'Measure', computed: 'readhub', deviceCol: 'Device', differs: 'differs from the device by more than the tolerance', statements: 'Device statements', original: 'Original file',
    current: 'This ECG', prior: 'Prior', delta: 'Change', priorEcg: 'Prior ECG', notMeasured: 'not measurable',
    heart_rate: 'HR (bpm)', rr: 'RR (ms)', pr: 'PR (ms)', qrs: 'QRS (ms)', qt: 'QT (ms)', qtc_bazett: 'QTc Bazett (ms)', qtc_fridericia: 'QTc Fridericia (ms)', qrs_axis: 'QRS axis (°)' },
};
/** The computed measurements, in the order the panel and the report list them. */
export const MEASURES = [
  ['heart_rate', 'heart_rate_bpm'], ['rr', 'rr_ms'], ['pr', 'pr_ms'], ['qrs', 'qrs_ms'], ['qt', 'qt_ms'],
  ['qtc_bazett', 'qtc_bazett_ms'], ['qtc_fridericia', 'qtc_fridericia_ms'], ['qrs_axis', 'qrs_axis_deg'],
];
const ORDER = ['I', 'II', 'III', 'aVR', 'aVL', 'aVF', 'V1', 'V2', 'V3', 'V4', 'V5', 'V6'];
const GRID_3x4 = [['I', 'aVR', 'V1', 'V4'], ['II', 'aVL', 'V2', 'V5'], ['III', 'aVF', 'V3', 'V6']];
const LEFT = 8; // mm of paper before the first trace (calibration pulse)

function el(tag, attrs = {}, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

/** The ECG viewer for one waveform instance. */
export class EcgViewer {
  constructor(url, { lang = () => 'zh' } = {}) {
    this.url = url;
    this.lang = lang;
    this.speed = 25; // mm/s
    this.gain = 10; // mm/mV
    this.layout = '3x4';
    this.calipers = [];
    this.el = document.createElement('div');
    this.el.className = 'ecg';
    this.paper = document.createElement('div');
    this.paper.className = 'paper';
    this.side = document.createElement('aside');
    this.side.className = 'ecg-side';
    this.readout = document.createElement('p');
    this.readout.id = 'caliper-readout';
    this.readout.setAttribute('role', 'status');
    this.el.append(this.controls(), this.paper, this.side);
  }

  t(k) { return LABELS[this.lang()][k] ?? k; }

  async load() {
    const r = await fetch(this.url, { credentials: 'same-origin', headers: { 'x-requested-with': 'readhub-viewer' } });
    if (!r.ok) {
      this.paper.textContent = `${this.t('noWaveform')}: HTTP ${r.status}`;
      return;
    }
    this.wf = await r.json();
    this.leads = new Map(this.wf.channels.map((c) => [c.label, c.samples_uv]));
    this.duration = this.wf.channels[0].samples_uv.length / this.wf.sampling_frequency;
    this.draw();
    this.sidePanel();
    return this.wf;
  }

  /** Serial comparison: the patient's earlier ECG drawn under this one, on the same paper
   *  (speed, gain, layout follow this viewer's), with both measurements and the change. */
  async addPrior(url, title) {
    const r = await fetch(url, { credentials: 'same-origin', headers: { 'x-requested-with': 'readhub-viewer' } });
    if (!r.ok) return null;
    const wf = await r.json();
    this.prior = { wf, title, leads: new Map(wf.channels.map((c) => [c.label, c.samples_uv])), duration: wf.channels[0].samples_uv.length / wf.sampling_frequency };
    this.draw();
    this.sidePanel();
    return wf;
  }

  controls() {
    const bar = document.createElement('div');
    bar.className = 'toolbar';
    const select = (name, label, options, current, set) => {
      const s = document.createElement('select');
      s.name = name;
      s.title = label;
      for (const [v, text] of options) s.append(new Option(text, v, false, String(v) === String(current)));
      s.addEventListener('change', () => { set(s.value); this.calipers = []; this.draw(); });
      const l = document.createElement('label');
      l.append(label, ' ', s);
      bar.append(l);
    };
    select('speed', this.t('speed'), [[25, '25 mm/s'], [50, '50 mm/s']], this.speed, (v) => { this.speed = Number(v); });
    select('gain', this.t('gain'), [[5, '5 mm/mV'], [10, '10 mm/mV'], [20, '20 mm/mV']], this.gain, (v) => { this.gain = Number(v); });
    select('layout', this.t('layout'), [['3x4', '3×4 + II'], ['12x1', '12×1']], this.layout, (v) => { this.layout = v; });
    const cal = document.createElement('button');
    cal.type = 'button';
    cal.dataset.action = 'calipers';
    cal.textContent = this.t('caliper');
    cal.addEventListener('click', () => { this.caliperMode = !this.caliperMode; cal.classList.toggle('on', this.caliperMode); });
    const clear = document.createElement('button');
    clear.type = 'button';
    clear.textContent = this.t('clear');
    clear.addEventListener('click', () => { this.calipers = []; this.drawCalipers(); });
    bar.append(cal, clear);
    this.calButton = cal;
    return bar;
  }

  /** Lay the leads out: each a strip with its start time on the paper. */
  strips(leads = this.leads, duration = this.duration, wf = this.wf) {
    const pitch = Math.max(3 * this.gain, 15); // mm between baselines
    const out = [];
    if (this.layout === '12x1') {
      ORDER.filter((l) => leads.has(l)).forEach((l, row) => out.push({ lead: l, t0: 0, t1: duration, x: LEFT, y: pitch * (row + 0.5) + 4 }));
      return { strips: out, height: pitch * (out.length + 0.2) + 4, width: LEFT + duration * this.speed + 4 };
    }
    const col = duration / 4;
    GRID_3x4.forEach((row, r) => row.forEach((l, c) => {
      if (leads.has(l)) out.push({ lead: l, t0: c * col, t1: (c + 1) * col, x: LEFT + c * col * this.speed, y: pitch * (r + 0.5) + 4 });
    }));
    const rhythm = leads.has('II') ? 'II' : wf.channels[0].label;
    out.push({ lead: rhythm, t0: 0, t1: duration, x: LEFT, y: pitch * 3.5 + 4, rhythm: true });
    return { strips: out, height: pitch * 4.2 + 4, width: LEFT + duration * this.speed + 4 };
  }

  draw() {
    if (!this.wf) return;
    const svg = this.paperOf(this.wf, this.leads, this.duration, 'ecg-paper');
    this.svg = svg;
    this.calLayer = el('g', { class: 'calipers' });
    svg.append(this.calLayer);
    this.bindCalipers(svg);
    const papers = [svg];
    if (this.prior) {
      const p = this.paperOf(this.prior.wf, this.prior.leads, this.prior.duration, 'ecg-paper prior-paper');
      p.prepend(el('text', { x: LEFT, y: 3, 'font-size': 3, class: 'prior-title' }, `${this.t('priorEcg')} ${this.prior.title || ''}`));
      papers.push(p);
    }
    this.paper.replaceChildren(...papers);
    this.drawCalipers();
  }

  /** One ECG on the paper grid, at this viewer's speed, gain and layout. */
  paperOf(wf, leads, duration, cls) {
    const { strips, width, height } = this.strips(leads, duration, wf);
    const svg = el('svg', { viewBox: `0 0 ${width} ${height}`, width: `${width * 4}`, height: `${height * 4}`, class: cls });
    // one scale of millimetres for every setting: at 25 mm/s the strip fits the pane, at
    // 50 mm/s it is twice as long (and scrolls), as on paper
    const fit = LEFT + duration * 25 + 4;
    svg.style.width = `${(100 * width) / fit}%`;
    const defs = el('defs');
    const small = el('pattern', { id: 'ecg-mm', width: 1, height: 1, patternUnits: 'userSpaceOnUse' });
    small.append(el('path', { d: 'M1 0H0V1', fill: 'none', stroke: '#f4c6c6', 'stroke-width': 0.06 }));
    const big = el('pattern', { id: 'ecg-5mm', width: 5, height: 5, patternUnits: 'userSpaceOnUse' });
    big.append(el('rect', { width: 5, height: 5, fill: 'url(#ecg-mm)' }), el('path', { d: 'M5 0H0V5', fill: 'none', stroke: '#e58f8f', 'stroke-width': 0.15 }));
    defs.append(small, big);
    svg.append(defs, el('rect', { width, height, fill: '#fff' }), el('rect', { width, height, fill: 'url(#ecg-5mm)' }));
    const fs = wf.sampling_frequency;
    for (const s of strips) {
      const samples = leads.get(s.lead);
      const g = el('g', { class: 'lead', 'data-lead': s.lead, 'data-x0': s.x, 'data-t0': s.t0, 'data-baseline': s.y, ...(s.rhythm ? { 'data-rhythm': '1' } : {}) });
      // the 1 mV calibration pulse at the start of each row
      if (s.t0 === 0) {
        const h = this.gain;
        g.append(el('path', { d: `M${s.x - 7} ${s.y}h1.5v${-h}h${0.2 * this.speed}v${h}h1.5`, fill: 'none', stroke: '#000', 'stroke-width': 0.2 }));
      }
      const i0 = Math.floor(s.t0 * fs), i1 = Math.min(samples.length, Math.ceil(s.t1 * fs));
      const pts = [];
      for (let i = i0; i < i1; i++) pts.push(`${(s.x + (i / fs - s.t0) * this.speed).toFixed(2)},${(s.y - (samples[i] / 1000) * this.gain).toFixed(2)}`);
      g.append(el('polyline', { points: pts.join(' '), fill: 'none', stroke: '#000', 'stroke-width': 0.2, 'stroke-linejoin': 'round' }));
      g.append(el('text', { x: s.x + 1, y: s.y - this.gain * 0.9, 'font-size': 3.5, 'font-weight': 'bold', class: 'lead-label' }, s.rhythm ? `${s.lead} ${this.t('rhythm')}` : s.lead));
      svg.append(g);
    }
    svg.append(el('text', { x: width - 60, y: height - 1.5, 'font-size': 3, class: 'settings' }, `${this.speed} mm/s  ${this.gain} mm/mV  ${fs} Hz`));
    return svg;
  }

  /** Paper millimetres under a pointer. */
  toPaper(e) {
    const p = new DOMPoint(e.clientX, e.clientY).matrixTransform(this.svg.getScreenCTM().inverse());
    return { x: p.x, y: p.y };
  }

  bindCalipers(svg) {
    let active = null;
    svg.addEventListener('pointerdown', (e) => {
      if (!this.caliperMode) return;
      svg.setPointerCapture(e.pointerId);
      const p = this.toPaper(e);
      active = { a: p, b: p };
      this.calipers.push(active);
      this.drawCalipers();
    });
    svg.addEventListener('pointermove', (e) => {
      if (!active) return;
      active.b = this.toPaper(e);
      this.drawCalipers();
    });
    svg.addEventListener('pointerup', () => { active = null; });
  }

  /** Interval, amplitude and rate of one caliper, from the paper geometry. */
  measure(c) {
    const ms = (Math.abs(c.b.x - c.a.x) / this.speed) * 1000;
    const mv = Math.abs(c.b.y - c.a.y) / this.gain;
    return { ms, mv, bpm: ms > 0 ? 60000 / ms : 0 };
  }

  drawCalipers() {
    if (!this.calLayer) return;
    this.calLayer.replaceChildren();
    const lines = [];
    this.calipers.forEach((c, i) => {
      const m = this.measure(c);
      const y = Math.min(c.a.y, c.b.y) - 3;
      const g = el('g', { class: 'caliper' });
      g.append(
        el('line', { x1: c.a.x, y1: c.a.y - 8, x2: c.a.x, y2: c.a.y + 8, stroke: '#1565c0', 'stroke-width': 0.25 }),
        el('line', { x1: c.b.x, y1: c.b.y - 8, x2: c.b.x, y2: c.b.y + 8, stroke: '#1565c0', 'stroke-width': 0.25 }),
        el('line', { x1: c.a.x, y1: y, x2: c.b.x, y2: y, stroke: '#1565c0', 'stroke-width': 0.25 }),
        el('text', { x: Math.min(c.a.x, c.b.x), y: y - 1, 'font-size': 3, fill: '#1565c0' }, `${Math.round(m.ms)} ms · ${Math.round(m.bpm)} bpm · ${m.mv.toFixed(2)} mV`),
      );
      this.calLayer.append(g);
      lines.push(`#${i + 1}: ${Math.round(m.ms)} ms, ${Math.round(m.bpm)} bpm, ${m.mv.toFixed(2)} mV`);
    });
    this.readout.textContent = lines.join('  ');
  }

  sidePanel() {
    const wf = this.wf;
    const fmt = (v) => (v === null || v === undefined ? '–' : String(Math.round(v)));
    // readhub's measurements beside the device's; a row where they differ by more than the
    // tolerance says so
    const rows = (wf.comparison || []).map((c) => {
      // the measure names are the labels' keys (heart_rate, pr, qtc_bazett, …)
      const key = c.measure;
      const tr = document.createElement('tr');
      tr.dataset.measure = c.measure;
      if (c.differs) { tr.className = 'differs'; tr.title = `${this.t('differs')} (±${c.tolerance})`; }
      for (const v of [this.t(key), fmt(c.computed), fmt(c.device)]) {
        const td = document.createElement('td');
        td.textContent = v;
        tr.append(td);
      }
      if (c.differs) tr.lastChild.textContent += ' ⚠';
      return tr;
    });
    const table = document.createElement('table');
    table.className = 'measurements';
    const head = document.createElement('tr');
    for (const k of ['measure', 'computed', 'deviceCol']) {
      const th = document.createElement('th');
      th.textContent = this.t(k);
      head.append(th);
    }
    table.append(head, ...rows);
    const h = document.createElement('h3');
    h.textContent = this.t('measurements');
    const parts = [h, table];
    if (!wf.computed && wf.computed_error) {
      const p = document.createElement('p');
      p.className = 'note';
      p.textContent = `${this.t('computed')}: ${this.t('notMeasured')} (${wf.computed_error})`;
      parts.push(p);
    }
    if (wf.computed?.method) {
      const p = document.createElement('p');
      p.className = 'note method';
      p.textContent = wf.computed.method;
      parts.push(p);
    }
    if ((wf.statements || []).length) {
      const h3 = document.createElement('h3');
      h3.textContent = this.t('statements');
      const ul = document.createElement('ul');
      ul.className = 'statements';
      for (const s of wf.statements) {
        const li = document.createElement('li');
        li.textContent = s;
        ul.append(li);
      }
      parts.push(h3, ul);
    }
    if (this.prior) parts.push(this.priorTable());
    const f = document.createElement('p');
    f.className = 'note';
    f.textContent = `${this.t('filters')}: ${wf.filter_low_hz ?? '–'}–${wf.filter_high_hz ?? '–'} Hz${wf.notch_hz ? `, notch ${wf.notch_hz} Hz` : ''}; ${wf.sampling_frequency} Hz`;
    parts.push(f);
    if (wf.original) {
      const a = document.createElement('a');
      a.href = this.url.replace('/api/waveforms/', '/api/ecg/') + '/original';
      a.className = 'original';
      a.textContent = `${this.t('original')} (${wf.original.format})`;
      parts.push(a);
    }
    this.side.replaceChildren(...parts, this.readout);
  }

  /** This ECG's measurements against the prior's, and the change. */
  priorTable() {
    const table = document.createElement('table');
    table.className = 'serial';
    const row = (cells, tag = 'td') => {
      const tr = document.createElement('tr');
      for (const c of cells) {
        const td = document.createElement(tag);
        td.textContent = c;
        tr.append(td);
      }
      return tr;
    };
    table.append(row([this.t('measure'), this.t('current'), this.t('prior'), this.t('delta')], 'th'));
    const a = this.wf.computed || {}, b = this.prior.wf.computed || {};
    for (const [key, field] of MEASURES) {
      const x = a[field], y = b[field];
      const d = x !== null && x !== undefined && y !== null && y !== undefined ? Math.round(x - y) : null;
      const tr = row([this.t(key), x ?? '–', y ?? '–', d === null ? '–' : `${d > 0 ? '+' : ''}${d}`]);
      tr.dataset.measure = key;
      table.append(tr);
    }
    return table;
  }
}

/** Keyboard: C toggles the calipers. */
export function handleEcgKey(v, e) {
  if (!v || (e.key !== 'c' && e.key !== 'C')) return false;
  v.calButton.click();
  return true;
}
