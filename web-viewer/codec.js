// Full-fidelity frames over a slow line: the viewer asks for frames in JPEG-LS lossless
// (for a noisy 15-bit CR 58% of the native bytes, less for smoother films) and decodes them here with CharLS
// compiled to WebAssembly (@cornerstonejs/codec-charls, the codec cornerstone and OHIF use,
// served by readhub itself: charlswasm_decode.js/.wasm, no CDN). The decoded samples are the
// same 8- or 16-bit little-endian samples the native syntax carries, so windowing is unchanged.

export const JPEG_LS = '1.2.840.10008.1.2.4.80';
export const NATIVE_TS = '1.2.840.10008.1.2.1';

let module = null;

/** The CharLS module, loaded once (a classic script defines the factory `CharLSWASM`).
 * The viewer calls it when it opens, so the codec is compiled while the film's frame is
 * still on its way. */
export function charls() {
  if (!module) {
    module = new Promise((resolve, reject) => {
      const s = document.createElement('script');
      s.src = '/app/charlswasm_decode.js';
      s.onload = () => globalThis.CharLSWASM({ locateFile: (f) => `/app/${f}` }).then(resolve, reject);
      s.onerror = () => reject(new Error('the JPEG-LS codec did not load'));
      document.head.append(s);
    });
    module.catch(() => { module = null; });
  }
  return module;
}

/** Whether frames should be asked for in JPEG-LS: yes, unless turned off for this browser
 * (`localStorage['readhub.frames'] = 'native'`) or WebAssembly is missing. */
export function wantJpegLs() {
  return typeof WebAssembly === 'object' && globalThis.localStorage?.getItem('readhub.frames') !== 'native';
}

/** Decode one JPEG-LS codestream to its samples (little-endian bytes, as native). */
export async function decodeJpegLs(codestream) {
  const m = await charls();
  const decoder = new m.JpegLSDecoder();
  try {
    decoder.getEncodedBuffer(codestream.length).set(codestream);
    decoder.decode();
    // a copy: the decoder's buffer lives in WebAssembly memory and goes with it
    return decoder.getDecodedBuffer().slice();
  } finally {
    decoder.delete();
  }
}
