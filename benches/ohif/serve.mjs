// Serves OHIF's prebuilt app (the npm package @ohif/app's dist/) and proxies /dicom-web to
// readhub, so the viewer and the DICOMweb root share one origin, as they would behind a
// hospital's reverse proxy. The proxy adds the HTTP Basic credentials of a readhub account:
// OHIF's default data source has no login of its own.
//   node serve.mjs DIST_DIR LISTEN_PORT READHUB_URL USER:PASSWORD
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';

const [dist, port, upstream, credentials] = process.argv.slice(2);
const auth = 'Basic ' + Buffer.from(credentials).toString('base64');
const types = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript', '.mjs': 'text/javascript',
  '.css': 'text/css', '.json': 'application/json', '.wasm': 'application/wasm',
  '.svg': 'image/svg+xml', '.png': 'image/png', '.ico': 'image/x-icon', '.woff2': 'font/woff2',
  '.onnx': 'application/octet-stream',
};
const log = fs.createWriteStream(process.env.PROXY_LOG || '/dev/null');

http.createServer((req, res) => {
  const url = new URL(req.url, 'http://x');
  if (url.pathname.startsWith('/dicom-web/')) {
    const headers = { ...req.headers, authorization: auth, host: new URL(upstream).host };
    const up = http.request(upstream + req.url, { method: req.method, headers }, (r) => {
      log.write(`${req.method} ${req.url} ${r.statusCode} ${req.headers.accept || ''}\n`);
      res.writeHead(r.statusCode, r.headers);
      r.pipe(res);
    });
    up.on('error', (e) => { res.writeHead(502); res.end(String(e)); });
    req.pipe(up);
    return;
  }
  // static files, and index.html for the app's client-side routes (its _redirects says so)
  let file = path.join(dist, path.normalize(decodeURIComponent(url.pathname)));
  if (!file.startsWith(dist) || !fs.existsSync(file) || fs.statSync(file).isDirectory()) {
    file = path.join(dist, 'index.html');
  }
  res.writeHead(200, { 'content-type': types[path.extname(file)] || 'application/octet-stream' });
  fs.createReadStream(file).pipe(res);
}).listen(Number(port), '127.0.0.1');
