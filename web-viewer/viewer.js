// The image viewport: one series (a stack of instances and frames) on a canvas, read from
// DICOMweb. The server decodes every transfer syntax to native 16-bit samples (WADO-RS
// frames); windowing, zoom, pan, rotation, flips and measurements happen here, so a drag
// costs no round trip. A rendered JPEG is shown first while the samples travel.
import { value, firstPart, partSyntax, frameFromBytes, windowInto } from './dicom.js';
import { JPEG_LS, NATIVE_TS, charls, decodeJpegLs, wantJpegLs } from './codec.js';

/** Window presets (CT Hounsfield units; on other modalities they are just numbers). */
export const PRESETS = [
  { key: 'lung', zh: '肺窗', en: 'Lung', width: 1500, center: -600 },
  { key: 'mediastinum', zh: '纵隔窗', en: 'Mediastinum', width: 350, center: 50 },
  { key: 'bone', zh: '骨窗', en: 'Bone', width: 2000, center: 300 },
  { key: 'soft', zh: '软组织窗', en: 'Soft tissue', width: 400, center: 40 },
  { key: 'brain', zh: '脑窗', en: 'Brain', width: 80, center: 40 },
];

const LABELS = {
  zh: { wl: '窗宽窗位', pan: '平移', zoom: '缩放', length: '测距', angle: '角度', fit: '适应', one: '1:1', invert: '反相', rotate: '旋转', flipH: '水平翻转', flipV: '垂直翻转', reset: '复位', clear: '清除测量', preset: '预设窗…', image: '图像', frame: '帧', uncalibrated: '未校准（像素）', pixelSpacing: '依据 Pixel Spacing（患者平面）', imagerSpacing: '依据 Imager Pixel Spacing（探测器平面，未校正放大）' },
  en: { wl: 'W/L', pan: 'Pan', zoom: 'Zoom', length: 'Length', angle: 'Angle', fit: 'Fit', one: '1:1', invert: 'Invert', rotate: 'Rotate', flipH: 'Flip H', flipV: 'Flip V', reset: 'Reset', clear: 'Clear', preset: 'Preset…', image: 'Image', frame: 'Frame', uncalibrated: 'uncalibrated (pixels)', pixelSpacing: 'from Pixel Spacing (patient plane)', imagerSpacing: 'from Imager Pixel Spacing (detector plane, not magnification-corrected)' },
};

const headers = { 'x-requested-with': 'readhub-viewer' };

/** Decoded frames, shared by every viewport and kept across studies (a reader goes back to
 * the film they just read, or to a prior): least recently used out first, within a budget
 * of samples in memory (a float per pixel). */
const FRAMES = new Map();
const BUDGET = 768 * 1024 * 1024;
let held = 0;
function cached(key, load) {
  if (FRAMES.has(key)) {
    const e = FRAMES.get(key);
    FRAMES.delete(key); // re-insert: Map order is the recency order
    FRAMES.set(key, e);
    return e.promise;
  }
  const e = { promise: load(), bytes: 0 };
  FRAMES.set(key, e);
  e.promise.then((f) => {
    e.bytes = f.values ? f.values.byteLength : f.rows * f.cols * 4;
    held += e.bytes;
    for (const [k, old] of FRAMES) {
      if (held <= BUDGET || k === key) break;
      FRAMES.delete(k);
      held -= old.bytes;
    }
  }, () => FRAMES.delete(key));
  return e.promise;
}
const NATIVE = `multipart/related; type="application/octet-stream"; transfer-syntax=${NATIVE_TS}`;
/** JPEG-LS lossless first (readhub sends it where it keeps every sample), native otherwise. */
const LOSSLESS = `multipart/related; type="application/octet-stream"; transfer-syntax=${JPEG_LS}, ${NATIVE}`;

/** Fetch JSON from the API (same origin, session cookie). */
async function getJson(url) {
  const r = await fetch(url, { credentials: 'same-origin', headers });
  if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
  return r.status === 204 ? [] : r.json();
}

/** Spacing in mm between pixel centres, and where it came from (PS3.3 10.7.1.3). */
export function spacingOf(meta) {
  const pick = (m, tag) => {
    const v = m?.[tag]?.Value;
    return v && v.length >= 2 && Number(v[0]) > 0 && Number(v[1]) > 0 ? [Number(v[0]), Number(v[1])] : null;
  };
  const shared = meta['52009229']?.Value?.[0]?.['00289110']?.Value?.[0];
  const ps = pick(meta, '00280030') || pick(shared, '00280030');
  if (ps) return { row: ps[0], col: ps[1], source: 'pixelSpacing' };
  const ips = pick(meta, '00181164');
  if (ips) return { row: ips[0], col: ips[1], source: 'imagerSpacing' };
  return { row: 1, col: 1, source: 'uncalibrated' };
}

/** One viewport. `lang()` gives the UI language; `onChange` is told when the image changes. */
export class Viewport {
  constructor({ lang = () => 'zh', prior = false } = {}) {
    this.lang = lang;
    // the JPEG-LS codec compiles while the first frame travels (a failure shows at decode)
    if (wantJpegLs()) charls().catch(() => null);
    this.el = document.createElement('div');
    this.el.className = 'viewport' + (prior ? ' prior' : '');
    this.el.tabIndex = 0;
    this.canvas = document.createElement('canvas');
    this.canvas.className = 'image';
    this.canvas.dataset.state = 'empty';
    this.overlay = document.createElement('canvas');
    this.overlay.className = 'overlay';
    this.corners = ['tl', 'tr', 'bl', 'br'].map((c) => {
      const d = document.createElement('div');
      d.className = `corner ${c}`;
      this.el.append(d);
      return d;
    });
    this.el.prepend(this.canvas, this.overlay);
    this.list = document.createElement('ul');
    this.list.className = 'measurements';
    this.stack = [];
    this.index = 0;
    this.metas = new Map();
    this.measures = new Map();
    this.tool = 'wl';
    this.view = null;
    this.src = document.createElement('canvas');
    this.draft = null;
    this.bind();
    new ResizeObserver(() => this.draw()).observe(this.el);
  }

  t(k) { return LABELS[this.lang()][k] ?? k; }

  // ---- loading ---------------------------------------------------------------------------
  /** Load a series: its metadata (one request), then the stack ordered by Instance Number. */
  async loadSeries(studyUid, seriesUid) {
    const base = `/dicom-web/studies/${studyUid}/series/${seriesUid}`;
    const metas = await getJson(`${base}/metadata`);
    metas.sort((a, b) => Number(value(a, '00200013', 0)) - Number(value(b, '00200013', 0)));
    const stack = [];
    for (const m of metas) {
      const sop = value(m, '00080018');
      this.metas.set(sop, m);
      const frames = Number(value(m, '00280008', 1)) || 1;
      for (let f = 1; f <= frames; f++) stack.push({ url: `${base}/instances/${sop}`, sop, frame: f, frames, meta: m });
    }
    this.stack = stack;
    this.index = 0;
    this.view = null;
    this.el.dataset.series = seriesUid;
    await this.show(0);
  }

  key(e) { return `${e.sop}#${e.frame}`; }

  /** The decoded samples of one stack entry, fetched once (see `cached`). */
  frame(i) {
    const e = this.stack[i];
    if (!e) return null;
    return cached(`${e.url}#${e.frame}`, () => {
      const photometric = String(value(e.meta, '00280004', '')).trim();
      return photometric.startsWith('MONOCHROME')
        ? fetch(`${e.url}/frames/${e.frame}`, { credentials: 'same-origin', headers: { ...headers, accept: wantJpegLs() ? LOSSLESS : NATIVE } })
          .then(async (r) => {
            if (!r.ok) throw new Error(`frame ${e.frame}: HTTP ${r.status}`);
            const part = firstPart(await r.arrayBuffer(), r.headers.get('content-type'));
            // the part says its syntax; the body's type names only the first part's kind
            const bytes = partSyntax(part) === JPEG_LS ? await decodeJpegLs(part.body) : part.body;
            return frameFromBytes(bytes, e.meta);
          })
        : this.renderedImage(e).then((img) => ({ image: img, rows: img.naturalHeight, cols: img.naturalWidth, colour: true }));
    });
  }

  renderedImage(e, viewport) {
    return new Promise((resolve, reject) => {
      const img = new Image();
      img.onload = () => resolve(img);
      img.onerror = () => reject(new Error('rendered image failed'));
      const path = e.frames > 1 ? `frames/${e.frame}/rendered` : 'rendered';
      img.src = `${e.url}/${path}${viewport ? `?viewport=${viewport}` : ''}`;
    });
  }

  /** The rendered preview of an instance known before its series' metadata (the worklist
   * item lists rows and columns): drawn while the metadata and samples travel. */
  earlyPreview(inst) {
    if (!inst?.rows || !inst?.columns) return;
    this.early = inst.sop_instance_uid;
    const img = new Image();
    img.onload = () => {
      if (this.canvas.dataset.state !== 'empty') return;
      if (this.stack.length && this.stack[this.index]?.sop !== inst.sop_instance_uid) return; // the series opened elsewhere
      if (!this.geometry) this.geometry = { rows: inst.rows, cols: inst.columns, spacing: { row: 1, col: 1, source: 'uncalibrated' } };
      if (!this.view) this.resetView();
      this.current = { image: img, rows: inst.rows, cols: inst.columns, preview: true };
      this.canvas.dataset.state = 'preview';
      this.draw();
    };
    img.src = `${inst.retrieve_url}/${inst.number_of_frames > 1 ? 'frames/1/rendered' : 'rendered'}?viewport=1024,1024`;
  }

  /** Show stack entry i: the preview if the samples are not here yet, then the samples. */
  async show(i) {
    if (!this.stack.length) return;
    i = Math.max(0, Math.min(this.stack.length - 1, i));
    this.index = i;
    const e = this.stack[i];
    const rows = Number(value(e.meta, '00280010')), cols = Number(value(e.meta, '00280011'));
    this.geometry = { rows, cols, spacing: spacingOf(e.meta) };
    if (!this.view) this.resetView();
    const fresh = !FRAMES.has(`${e.url}#${e.frame}`);
    const want = this.frame(i);
    let done = false;
    if (this.canvas.dataset.state === 'empty' && fresh && this.early !== e.sop) {
      // a slow line: the server's small JPEG first, replaced when the samples arrive
      this.renderedImage(e, '1024,1024').then((img) => {
        if (done || this.index !== i) return;
        this.current = { image: img, rows, cols, preview: true };
        this.canvas.dataset.state = 'preview';
        this.draw();
      }).catch(() => {});
    }
    try {
      const f = await want;
      done = true;
      if (this.index !== i) return;
      this.current = f;
      if (!f.colour && (this.view.center === null)) { this.view.center = f.center; this.view.width = f.width; }
      this.paintSource();
      this.canvas.dataset.state = 'pixels';
      this.draw();
      this.el.dispatchEvent(new CustomEvent('imagechange', { detail: { index: i } }));
      this.preload(i);
    } catch (x) {
      this.corners[3].textContent = x.message;
    }
  }

  /** Fetch the next few frames (and one behind) so scrolling does not wait, and forget far ones. */
  preload(i) {
    const want = [i + 1, i + 2, i + 3, i + 4, i - 1, i - 2].filter((j) => j >= 0 && j < this.stack.length);
    (async () => { for (const j of want) await this.frame(j)?.catch(() => {}); })();
  }

  // ---- view state --------------------------------------------------------------------------
  resetView() {
    this.view = { fit: true, zoom: 1, panX: 0, panY: 0, rot: 0, flipH: false, flipV: false, invert: false, center: null, width: null };
    if (this.current && !this.current.colour && !this.current.preview) { this.view.center = this.current.center; this.view.width = this.current.width; }
  }

  /** Window the samples into the source canvas at native size. */
  paintSource() {
    const f = this.current;
    if (!f) return;
    this.src.width = f.cols;
    this.src.height = f.rows;
    const ctx = this.src.getContext('2d');
    if (f.colour || f.preview) {
      ctx.filter = this.view.invert ? 'invert(1)' : 'none';
      ctx.drawImage(f.image, 0, 0, f.cols, f.rows);
      ctx.filter = 'none';
      return;
    }
    if (!this.rgba || this.rgba.width !== f.cols || this.rgba.height !== f.rows) this.rgba = ctx.createImageData(f.cols, f.rows);
    windowInto(f, this.view.center, this.view.width, f.invert !== this.view.invert, this.rgba.data);
    ctx.putImageData(this.rgba, 0, 0);
  }

  /** The image→screen transform (CSS pixels of the viewport). */
  matrix() {
    const { cols, rows } = this.geometry;
    const w = this.el.clientWidth, h = this.el.clientHeight;
    const v = this.view;
    const turned = v.rot % 180 !== 0;
    const fit = Math.min(w / (turned ? rows : cols), h / (turned ? cols : rows));
    const zoom = v.fit ? fit : v.zoom;
    return new DOMMatrix()
      .translate(w / 2 + v.panX, h / 2 + v.panY)
      .rotate(v.rot)
      .scale(zoom * (v.flipH ? -1 : 1), zoom * (v.flipV ? -1 : 1))
      .translate(-cols / 2, -rows / 2);
  }

  scale() { const m = this.matrix(); return Math.hypot(m.a, m.b); }

  toImage(clientX, clientY) {
    const r = this.el.getBoundingClientRect();
    return this.matrix().inverse().transformPoint(new DOMPoint(clientX - r.left, clientY - r.top));
  }

  draw() {
    if (!this.view || !this.geometry) return;
    const w = this.el.clientWidth, h = this.el.clientHeight;
    for (const c of [this.canvas, this.overlay]) {
      if (c.width !== w || c.height !== h) { c.width = w; c.height = h; }
    }
    const ctx = this.canvas.getContext('2d');
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.fillStyle = '#000';
    ctx.fillRect(0, 0, w, h);
    if (this.current) {
      ctx.setTransform(this.matrix());
      ctx.imageSmoothingEnabled = this.scale() < 2;
      if (this.current.preview) {
        ctx.filter = this.view.invert ? 'invert(1)' : 'none';
        ctx.drawImage(this.current.image, 0, 0, this.geometry.cols, this.geometry.rows);
        ctx.filter = 'none';
      } else ctx.drawImage(this.src, 0, 0);
    }
    this.drawOverlay();
  }

  // ---- measurements --------------------------------------------------------------------------
  currentMeasures() {
    const k = this.stack[this.index] ? this.key(this.stack[this.index]) : '';
    if (!this.measures.has(k)) this.measures.set(k, []);
    return this.measures.get(k);
  }

  /** Length in mm (or px when uncalibrated) between two image points: columns and rows
   * may have different spacings (Pixel Spacing is row spacing \ column spacing). */
  lengthOf(a, b) {
    const s = this.geometry.spacing;
    return Math.hypot((b.x - a.x) * s.col, (b.y - a.y) * s.row);
  }

  angleOf(a, b, c) {
    const s = this.geometry.spacing;
    const v1 = [(a.x - b.x) * s.col, (a.y - b.y) * s.row], v2 = [(c.x - b.x) * s.col, (c.y - b.y) * s.row];
    const cos = (v1[0] * v2[0] + v1[1] * v2[1]) / (Math.hypot(...v1) * Math.hypot(...v2));
    return (Math.acos(Math.max(-1, Math.min(1, cos))) * 180) / Math.PI;
  }

  measureText(m) {
    const unit = this.geometry.spacing.source === 'uncalibrated' ? 'px' : 'mm';
    if (m.type === 'length') return `${this.lengthOf(m.pts[0], m.pts[1]).toFixed(1)} ${unit}`;
    if (m.pts.length < 3) return '';
    return `${this.angleOf(...m.pts).toFixed(1)}°`;
  }

  drawOverlay() {
    const ctx = this.overlay.getContext('2d');
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, this.overlay.width, this.overlay.height);
    const m = this.matrix();
    const all = [...this.currentMeasures(), ...(this.draft ? [this.draft] : [])];
    ctx.lineWidth = 1.5;
    ctx.font = '13px "Noto Sans CJK SC", sans-serif';
    for (const x of all) {
      const pts = x.pts.map((p) => m.transformPoint(new DOMPoint(p.x, p.y)));
      ctx.strokeStyle = ctx.fillStyle = '#4fc3f7';
      ctx.beginPath();
      pts.forEach((p, i) => (i ? ctx.lineTo(p.x, p.y) : ctx.moveTo(p.x, p.y)));
      ctx.stroke();
      for (const p of pts) ctx.fillRect(p.x - 2, p.y - 2, 4, 4);
      const last = pts[pts.length - 1];
      ctx.fillText(this.measureText(x), last.x + 6, last.y - 6);
    }
    this.updateCorners();
    this.list.replaceChildren(...this.currentMeasures().map((x, i) => {
      const li = document.createElement('li');
      li.dataset.kind = x.type;
      li.textContent = `${x.type === 'length' ? 'L' : 'A'}${i + 1}: ${this.measureText(x)}`;
      return li;
    }));
    if (this.currentMeasures().length) {
      const li = document.createElement('li');
      li.className = 'basis';
      li.textContent = this.t(this.geometry.spacing.source);
      this.list.append(li);
    }
  }

  updateCorners() {
    const e = this.stack[this.index];
    if (!e) return;
    const m = e.meta;
    const v = (tag) => String(value(m, tag, '') ?? '');
    const pn = value(m, '00100010');
    const name = (pn?.Alphabetic ?? pn?.Ideographic ?? '').replace(/\^/g, ' ');
    const date = v('00080020').replace(/^(\d{4})(\d{2})(\d{2})$/, '$1-$2-$3');
    this.corners[0].textContent = `${name}\n${v('00100020')}  ${v('00100040')} ${v('00101010')}`;
    this.corners[1].textContent = `${v('00080080')}\n${date} ${v('00080030').slice(0, 4).replace(/(\d\d)(\d\d)/, '$1:$2')}\n${v('00081030')}\n${v('0008103E')}`;
    const wl = this.current && !this.current.colour && !this.current.preview ? `W ${Math.round(this.view.width)} L ${Math.round(this.view.center)}` : '';
    this.corners[2].textContent = `${wl}\n${Math.round(this.scale() * 100)}%${this.view.invert ? ' INV' : ''}${this.view.rot ? ` ${this.view.rot}°` : ''}`;
    const frame = e.frames > 1 ? `  ${this.t('frame')} ${e.frame}/${e.frames}` : '';
    this.corners[3].textContent = `S ${v('00200011')}  ${this.t('image')} ${this.index + 1}/${this.stack.length}${frame}\n${v('00080060')} ${v('00180015')}`;
    this.el.dataset.index = String(this.index);
  }

  // ---- interaction ---------------------------------------------------------------------------
  act(what, arg) {
    const v = this.view;
    if (!v) return;
    switch (what) {
      case 'fit': v.fit = true; v.panX = v.panY = 0; break;
      case 'one': v.fit = false; v.zoom = 1; v.panX = v.panY = 0; break;
      case 'invert': v.invert = !v.invert; this.paintSource(); break;
      case 'rotate': v.rot = (v.rot + 90) % 360; break;
      case 'flipH': v.flipH = !v.flipH; break;
      case 'flipV': v.flipV = !v.flipV; break;
      case 'reset': this.resetView(); this.paintSource(); break;
      case 'clear': this.currentMeasures().length = 0; break;
      case 'preset': {
        const p = PRESETS.find((x) => x.key === arg);
        if (p && this.current && !this.current.colour) { v.center = p.center; v.width = p.width; this.paintSource(); }
        break;
      }
      case 'scroll': this.show(this.index + arg); return;
      default: return;
    }
    this.draw();
  }

  /** Zoom to `scale` keeping the image point under (clientX, clientY) where it is. */
  zoomAbout(clientX, clientY, scale) {
    const r = this.el.getBoundingClientRect();
    const at = new DOMPoint(clientX - r.left, clientY - r.top);
    const p = this.matrix().inverse().transformPoint(at);
    this.view.fit = false;
    this.view.zoom = Math.max(0.02, Math.min(40, scale));
    const q = this.matrix().transformPoint(p);
    this.view.panX += at.x - q.x;
    this.view.panY += at.y - q.y;
  }

  setTool(tool) {
    this.tool = tool;
    this.el.dataset.tool = tool;
    this.el.dispatchEvent(new CustomEvent('toolchange', { detail: { tool } }));
  }

  bind() {
    let drag = null, pending = false;
    const redraw = (source) => {
      if (pending) return;
      pending = true;
      requestAnimationFrame(() => { pending = false; if (source) this.paintSource(); this.draw(); });
    };
    this.el.addEventListener('contextmenu', (e) => e.preventDefault());
    this.el.addEventListener('pointerdown', (e) => {
      if (!this.view || !this.current) return;
      this.el.focus();
      this.el.setPointerCapture(e.pointerId);
      const tool = e.button === 1 ? 'pan' : e.button === 2 ? 'zoom' : this.tool;
      const p = this.toImage(e.clientX, e.clientY);
      if (tool === 'length') this.draft = { type: 'length', pts: [p, p] };
      else if (tool === 'angle') {
        // first drag: one arm to the vertex; then a click places the other arm's end
        if (this.draft?.type === 'angle') this.draft.pts[2] = p;
        else this.draft = { type: 'angle', pts: [p, p] };
      }
      drag = { tool, x: e.clientX, y: e.clientY, v: { ...this.view }, scale: this.scale() };
    });
    this.el.addEventListener('pointermove', (e) => {
      if (this.draft && (drag || this.draft.type === 'angle')) {
        this.draft.pts[this.draft.pts.length - 1] = this.toImage(e.clientX, e.clientY);
        return redraw(false);
      }
      if (!drag) return;
      const dx = e.clientX - drag.x, dy = e.clientY - drag.y;
      const v = this.view;
      if (drag.tool === 'wl' && this.current && !this.current.colour && !this.current.preview) {
        const range = Math.max(this.current.hi - this.current.lo, 1), k = range / 512;
        v.width = Math.max(1, drag.v.width + dx * k);
        v.center = drag.v.center + dy * k;
        return redraw(true);
      }
      if (drag.tool === 'pan') { v.panX = drag.v.panX + dx; v.panY = drag.v.panY + dy; return redraw(false); }
      if (drag.tool === 'zoom') { this.zoomAbout(drag.x, drag.y, drag.scale * Math.exp(-dy / 200)); return redraw(false); }
    });
    this.el.addEventListener('pointerup', (e) => {
      if (this.draft && drag) {
        const d = this.draft;
        const p = this.toImage(e.clientX, e.clientY);
        d.pts[d.pts.length - 1] = p;
        if (d.type === 'length') {
          if (this.lengthOf(d.pts[0], d.pts[1]) > 0) this.currentMeasures().push(d);
          this.draft = null;
        } else if (d.pts.length === 2) {
          d.pts.push({ x: p.x, y: p.y }); // the vertex is placed; the next click ends the angle
        } else {
          this.currentMeasures().push(d);
          this.draft = null;
        }
        this.draw();
      }
      drag = null;
    });
    this.el.addEventListener('wheel', (e) => {
      if (!this.view) return;
      e.preventDefault();
      if (e.ctrlKey) {
        this.zoomAbout(e.clientX, e.clientY, this.scale() * Math.exp(-e.deltaY / 300));
        this.draw();
      } else this.act('scroll', Math.sign(e.deltaY));
    }, { passive: false });
  }
}

/** Keyboard shortcuts shared by the reading screen (a radiologist keeps a hand on the keys). */
export const KEYS = {
  w: ['tool', 'wl'], p: ['tool', 'pan'], z: ['tool', 'zoom'], l: ['tool', 'length'], a: ['tool', 'angle'],
  i: ['act', 'invert'], r: ['act', 'rotate'], h: ['act', 'flipH'], v: ['act', 'flipV'], f: ['act', 'fit'], o: ['act', 'one'],
  Escape: ['act', 'reset'], ArrowDown: ['scroll', 1], ArrowRight: ['scroll', 1], PageDown: ['scroll', 5],
  ArrowUp: ['scroll', -1], ArrowLeft: ['scroll', -1], PageUp: ['scroll', -5],
  1: ['preset', 'lung'], 2: ['preset', 'mediastinum'], 3: ['preset', 'bone'], 4: ['preset', 'soft'], 5: ['preset', 'brain'],
};

/** A toolbar for a viewport: tools, view actions, presets. */
export function toolbar(vp, lang) {
  const L = () => LABELS[lang()];
  const bar = document.createElement('div');
  bar.className = 'toolbar';
  const button = (id, label, onclick, title) => {
    const b = document.createElement('button');
    b.type = 'button';
    b.dataset.action = id;
    b.textContent = label;
    if (title) b.title = title;
    b.addEventListener('click', onclick);
    bar.append(b);
    return b;
  };
  const tools = ['wl', 'pan', 'zoom', 'length', 'angle'].map((t) => {
    const key = Object.entries(KEYS).find(([, v]) => v[0] === 'tool' && v[1] === t)?.[0];
    return button(`tool-${t}`, L()[t], () => vp.setTool(t), key ? `${L()[t]} (${key.toUpperCase()})` : undefined);
  });
  const mark = () => tools.forEach((b) => b.classList.toggle('on', b.dataset.action === `tool-${vp.tool}`));
  vp.el.addEventListener('toolchange', mark);
  mark();
  for (const a of ['fit', 'one', 'invert', 'rotate', 'flipH', 'flipV', 'reset', 'clear']) {
    const key = Object.entries(KEYS).find(([, v]) => v[0] === 'act' && v[1] === a)?.[0];
    button(a, L()[a], () => vp.act(a), key ? `${L()[a]} (${key === 'Escape' ? 'Esc' : key.toUpperCase()})` : undefined);
  }
  const sel = document.createElement('select');
  sel.name = 'preset';
  sel.append(new Option(L().preset, ''), ...PRESETS.map((p, i) => new Option(`${i + 1} ${p[lang()]} ${p.width}/${p.center}`, p.key)));
  sel.addEventListener('change', () => { vp.act('preset', sel.value); sel.value = ''; });
  bar.append(sel);
  return bar;
}

/** Route a key press to a viewport; true when it was ours. */
export function handleKey(vp, e) {
  const k = KEYS[e.key] || KEYS[e.key.toLowerCase?.()];
  if (!k || !vp) return false;
  const [kind, arg] = k;
  if (kind === 'tool') vp.setTool(arg);
  else if (kind === 'act') vp.act(arg);
  else if (kind === 'scroll') vp.act('scroll', arg);
  else if (kind === 'preset') vp.act('preset', arg);
  return true;
}

/** Series thumbnails of a study (QIDO-RS series, then each series' thumbnail). */
export async function seriesStrip(studyUid, onPick) {
  const strip = document.createElement('div');
  strip.className = 'series-strip';
  const series = await getJson(`/dicom-web/studies/${studyUid}/series`);
  series.sort((a, b) => Number(value(a, '00200011', 0)) - Number(value(b, '00200011', 0)));
  const items = series.map((s) => {
    const uid = value(s, '0020000E');
    const b = document.createElement('button');
    b.type = 'button';
    b.className = 'series';
    b.dataset.series = uid;
    const img = new Image();
    img.loading = 'lazy';
    img.alt = '';
    img.src = `/dicom-web/studies/${studyUid}/series/${uid}/thumbnail?viewport=96,96`;
    const cap = document.createElement('span');
    cap.textContent = `${value(s, '00080060', '')} S${value(s, '00200011', '')} ${value(s, '0008103E', '') || ''} (${value(s, '00201209', '')})`;
    b.append(img, cap);
    b.addEventListener('click', () => { strip.querySelectorAll('.series').forEach((x) => x.classList.toggle('on', x === b)); onPick(uid); });
    return b;
  });
  strip.append(...items);
  return { strip, series: series.map((s) => ({ uid: value(s, '0020000E'), modality: value(s, '00080060', ''), first: items.find((b) => b.dataset.series === value(s, '0020000E')) })) };
}
