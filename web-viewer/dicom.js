// Pixels for the viewer: one frame fetched through WADO-RS as little-endian samples, native
// or in JPEG-LS lossless decoded here (codec.js), windowed here so a window/level drag
// needs no round trip.

/** The first value of a DICOM JSON attribute. */
export const value = (meta, tag, dflt = undefined) => meta[tag]?.Value?.[0] ?? dflt;

/** The first part of a multipart/related response (one WADO-RS frame): its headers (as
 * text) and its body. The headers are found from the front and the part's end from the back
 * (the closing delimiter is the last thing in the body), so a 15 MB frame is not scanned
 * byte by byte in JavaScript. Not multipart: the whole response is the body. */
export function firstPart(buffer, contentType) {
  const m = /boundary="?([^";]+)"?/i.exec(contentType || '');
  const bytes = new Uint8Array(buffer);
  if (!m) return { headers: '', body: bytes };
  const enc = new TextEncoder();
  const at = (needle, i) => needle.every((b, j) => bytes[i + j] === b);
  const find = (needle, from) => {
    for (let i = from; i <= bytes.length - needle.length; i++) if (at(needle, i)) return i;
    return -1;
  };
  const findLast = (needle) => {
    for (let i = bytes.length - needle.length; i >= 0; i--) if (at(needle, i)) return i;
    return -1;
  };
  const open = find([...enc.encode('--' + m[1])], 0);
  const start = find([...enc.encode('\r\n\r\n')], open) + 4;
  // the viewer asks for one frame, so the part ends at the closing delimiter (were there
  // more parts, the samples read from the front would still be this part's)
  const end = findLast([...enc.encode('\r\n--' + m[1])]);
  const headers = new TextDecoder().decode(bytes.subarray(open, Math.max(open, start - 4)));
  return { headers, body: bytes.subarray(start, end < start ? bytes.length : end) };
}

/** The transfer syntax a part's Content-Type names (PS3.18 8.7.3.5.2), '' if none. */
export function partSyntax(part) {
  return /transfer-syntax="?([0-9.]+)/i.exec(part.headers)?.[1] ?? '';
}

/** A decoded monochrome frame: modality values (rescale applied) and its geometry. */
export function frameFromBytes(bytes, meta) {
  const rows = value(meta, '00280010'), cols = value(meta, '00280011');
  const bits = value(meta, '00280100', 16), signed = value(meta, '00280103', 0) === 1;
  const slope = Number(value(meta, '00281053', 1)), intercept = Number(value(meta, '00281052', 0));
  const n = rows * cols;
  const buf = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
  const raw = bits === 8 ? new Uint8Array(buf, 0, n) : signed ? new Int16Array(buf, 0, n) : new Uint16Array(buf, 0, n);
  const values = new Float32Array(n);
  let lo = Infinity, hi = -Infinity;
  for (let i = 0; i < n; i++) {
    const v = raw[i] * slope + intercept;
    values[i] = v;
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  const photometric = String(value(meta, '00280004', 'MONOCHROME2')).trim();
  let center = Number(value(meta, '00281050', NaN)), width = Number(value(meta, '00281051', NaN));
  if (!(width > 0)) { center = (lo + hi) / 2; width = Math.max(hi - lo, 1); }
  return { rows, cols, values, lo, hi, center, width, invert: photometric === 'MONOCHROME1' };
}

/** Window a frame into RGBA pixels (PS3.3 C.11.2.1.2 linear function). */
export function windowInto(frame, center, width, invert, rgba) {
  const { values } = frame;
  const c = center - 0.5, w = Math.max(width - 1, 1);
  for (let i = 0, j = 0; i < values.length; i++, j += 4) {
    let y = ((values[i] - c) / w + 0.5) * 255;
    y = y < 0 ? 0 : y > 255 ? 255 : y;
    if (invert) y = 255 - y;
    rgba[j] = rgba[j + 1] = rgba[j + 2] = y;
    rgba[j + 3] = 255;
  }
}
