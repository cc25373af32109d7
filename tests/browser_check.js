// browser_check.js: opens an HTML file in headless Chromium and fails on
// anything a reader would see as broken. Used by tests/browser_report.sh.
//
//   node browser_check.js CHROMIUM PAGE.html MIN_IMAGES MIN_SVGS [SHOT.png]
//
// Chromium is driven over the DevTools protocol on --remote-debugging-pipe
// (fd 3: commands in, fd 4: replies out, NUL-terminated JSON), so nothing
// beyond node and Debian's chromium is needed and no port is opened. Fails
// (exit 1, one line per problem) on: a console error or warning, an
// uncaught exception, a dialog (an injected alert()), a request that is not
// file: or data: (the page must need no network), an <img> that does not
// decode, fewer images or <svg> plots than expected, a <script> element, or
// a screenshot that is (nearly) one flat colour. With SHOT.png, a
// screenshot of the whole page (1280 px wide, up to 4000 px) is written there.
'use strict';
const { spawn } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');
const zlib = require('zlib');

const [chrome, page, minImgArg, minSvgArg, shot] = process.argv.slice(2);
if (!chrome || !page || minSvgArg === undefined) {
  console.error('usage: node browser_check.js CHROMIUM PAGE.html MIN_IMAGES MIN_SVGS [SHOT.png]');
  process.exit(2);
}
const problems = [];
const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'ddpm-chromium-'));
const proc = spawn(chrome, [
  '--headless=new', '--remote-debugging-pipe', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage',
  '--no-first-run', '--no-default-browser-check', '--disable-extensions', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--hide-scrollbars', '--mute-audio',
  '--user-data-dir=' + profile, 'about:blank',
], { stdio: ['ignore', 'ignore', 'pipe', 'pipe', 'pipe'], detached: true }); // its own process group, see finish()
let stderr = '';
proc.stderr.on('data', (d) => { stderr = (stderr + d).slice(-4000); });

let nextId = 1, buf = '';
const pending = new Map(), listeners = [];
function send(method, params = {}, sessionId) {
  const id = nextId++;
  proc.stdio[3].write(JSON.stringify({ id, method, params, sessionId }) + '\0');
  return new Promise((resolve, reject) => pending.set(id, { resolve, reject, method }));
}
proc.stdio[4].on('data', (d) => {
  buf += d.toString('utf8');
  let i;
  while ((i = buf.indexOf('\0')) >= 0) {
    const msg = JSON.parse(buf.slice(0, i));
    buf = buf.slice(i + 1);
    if (msg.id && pending.has(msg.id)) {
      const p = pending.get(msg.id);
      pending.delete(msg.id);
      if (msg.error) p.reject(new Error(p.method + ': ' + msg.error.message));
      else p.resolve(msg.result);
    } else if (msg.method) listeners.forEach((l) => l(msg));
  }
});
function waitFor(method) {
  return new Promise((resolve) => listeners.push((m) => { if (m.method === method) resolve(m.params); }));
}

listeners.push((m) => {
  const p = m.params || {};
  if (m.method === 'Runtime.consoleAPICalled' && (p.type === 'error' || p.type === 'warning' || p.type === 'assert'))
    problems.push('console ' + p.type + ': ' + (p.args || []).map((a) => a.value ?? a.description).join(' '));
  if (m.method === 'Runtime.exceptionThrown') problems.push('exception: ' + p.exceptionDetails.text);
  if (m.method === 'Log.entryAdded' && (p.entry.level === 'error' || p.entry.level === 'warning'))
    problems.push('console ' + p.entry.level + ': ' + p.entry.text + (p.entry.url ? ' (' + p.entry.url.slice(0, 80) + ')' : ''));
  if (m.method === 'Page.javascriptDialogOpening') { // dismissed, else the page would hang
    problems.push('a dialog opened: ' + p.message);
    send('Page.handleJavaScriptDialog', { accept: true }, m.sessionId).catch(() => {});
  }
  if (m.method === 'Network.requestWillBeSent' && !/^(file|data):/.test(p.request.url))
    problems.push('network request: ' + p.request.url.slice(0, 120));
  if (m.method === 'Network.loadingFailed') problems.push('load failed: ' + p.errorText);
});

// The fraction of pixels that differ from the top-left one and the number
// of distinct colours of an 8-bit RGB/RGBA PNG (Chromium's screenshots).
function pngStats(png) {
  let pos = 8, w = 0, h = 0, ctype = 0;
  const idat = [];
  while (pos < png.length) {
    const len = png.readUInt32BE(pos), type = png.toString('latin1', pos + 4, pos + 8);
    const data = png.subarray(pos + 8, pos + 8 + len);
    if (type === 'IHDR') { w = data.readUInt32BE(0); h = data.readUInt32BE(4); ctype = data[9]; }
    if (type === 'IDAT') idat.push(data);
    pos += 12 + len;
  }
  const bpp = ctype === 6 ? 4 : 3, stride = w * bpp, raw = zlib.inflateSync(Buffer.concat(idat));
  const px = Buffer.alloc(h * stride);
  for (let y = 0; y < h; y++) {
    const f = raw[y * (stride + 1)], src = y * (stride + 1) + 1, dst = y * stride;
    for (let x = 0; x < stride; x++) {
      const a = x >= bpp ? px[dst + x - bpp] : 0, b = y ? px[dst - stride + x] : 0;
      const c = x >= bpp && y ? px[dst - stride + x - bpp] : 0;
      let pred = 0;
      if (f === 1) pred = a; else if (f === 2) pred = b; else if (f === 3) pred = (a + b) >> 1;
      else if (f === 4) { const p = a + b - c, pa = Math.abs(p - a), pb = Math.abs(p - b), pc = Math.abs(p - c);
        pred = pa <= pb && pa <= pc ? a : pb <= pc ? b : c; }
      px[dst + x] = (raw[src + x] + pred) & 255;
    }
  }
  const colours = new Set();
  let differ = 0;
  for (let i = 0; i < w * h; i++) {
    const o = i * bpp, rgb = (px[o] << 16) | (px[o + 1] << 8) | px[o + 2];
    if (colours.size < 100000) colours.add(rgb);
    if (Math.abs(px[o] - px[0]) + Math.abs(px[o + 1] - px[1]) + Math.abs(px[o + 2] - px[2]) > 24) differ++;
  }
  return { w, h, differ: differ / (w * h), colours: colours.size };
}

async function main() {
  const { targetId } = await send('Target.createTarget', { url: 'about:blank' });
  const { sessionId } = await send('Target.attachToTarget', { targetId, flatten: true });
  const s = (method, params) => send(method, params, sessionId);
  for (const d of ['Page', 'Runtime', 'Log', 'Network']) await s(d + '.enable');
  await s('Emulation.setDeviceMetricsOverride', { width: 1280, height: 2400, deviceScaleFactor: 1, mobile: false });
  const loaded = waitFor('Page.loadEventFired');
  await s('Page.navigate', { url: 'file://' + path.resolve(page) });
  await loaded;
  const check = `(async () => {
    const imgs = [...document.images];
    const bad = [];
    await Promise.all(imgs.map((i) => i.decode().then(() => { if (!i.naturalWidth) bad.push(i.alt); },
                                                        () => bad.push(i.alt || i.src.slice(0, 40)))));
    return JSON.stringify({ imgs: imgs.length, bad, svgs: document.querySelectorAll('svg').length,
                            scripts: document.scripts.length, text: document.body.innerText.length });
  })()`;
  const r = await s('Runtime.evaluate', { expression: check, awaitPromise: true, returnByValue: true });
  const st = JSON.parse(r.result.value);
  if (st.bad.length) problems.push('images that do not decode: ' + st.bad.join(', '));
  if (st.imgs < +minImgArg) problems.push(`${st.imgs} images, expected at least ${minImgArg}`);
  if (st.svgs < +minSvgArg) problems.push(`${st.svgs} plots, expected at least ${minSvgArg}`);
  if (st.scripts) problems.push(`${st.scripts} <script> elements (the page must have none)`);
  if (st.text < 200) problems.push(`only ${st.text} characters of text`);
  const { data } = await s('Page.captureScreenshot', { format: 'png' });
  const png = Buffer.from(data, 'base64'), px = pngStats(png);
  if (px.differ < 0.05 || px.colours < 64)
    problems.push(`blank screenshot: ${(100 * px.differ).toFixed(1)} % of the pixels differ from the corner, ${px.colours} colours`);
  if (shot) { // the whole page (up to 4000 px), as the docs show it
    const m = await s('Page.getLayoutMetrics');
    const height = Math.min(4000, Math.ceil((m.cssContentSize || m.contentSize).height));
    await s('Emulation.setDeviceMetricsOverride', { width: 1280, height, deviceScaleFactor: 1, mobile: false });
    const full = await s('Page.captureScreenshot', { format: 'png' });
    fs.writeFileSync(shot, Buffer.from(full.data, 'base64'));
  }
  await new Promise((res) => setTimeout(res, 200)); // late console messages
  console.log(`${page}: ${st.imgs} images decoded, ${st.svgs} plots, ${(100 * px.differ).toFixed(0)} % non-background`);
  await send('Browser.close').catch(() => {});
}

const timer = setTimeout(() => { problems.push('timed out after 90 s'); finish(); }, 90000);
let exited = false, finishing = false;
// Chromium's helpers (zygote, renderer, crashpad) live in its process group:
// killing the group after the browser exits leaves none writing to the profile.
function killGroup() {
  try { process.kill(-proc.pid, 'SIGKILL'); } catch (e) { /* already gone */ }
}
function finish() {
  if (finishing) return;
  finishing = true;
  clearTimeout(timer);
  const done = () => {
    killGroup();
    // the profile may still be flushed for a moment: retry the removal
    setTimeout(() => {
      try { fs.rmSync(profile, { recursive: true, force: true, maxRetries: 10, retryDelay: 100 }); } catch (e) { /* left in tmp */ }
      problems.forEach((p) => console.error(`browser_check: ${page}: ${p}`));
      process.exit(problems.length ? 1 : 0);
    }, 200);
  };
  if (exited) return done();
  proc.on('exit', done);
  setTimeout(killGroup, 3000); // Browser.close was sent: give it time to shut down cleanly
}
proc.on('exit', (code) => {
  exited = true;
  if (!finishing && pending.size) { problems.push(`chromium exited (${code}): ${stderr.trim().split('\n').pop()}`); finish(); }
});
main().then(finish, (e) => { problems.push(e.message); finish(); });
