// The JS backend's Node test (driven by tests/js_backend.rs): loads the wasm32 host built
// by scripts/js-build.sh, runs the recorded native transcript's calls through it and
// compares every answer with the native one as text, then checks what the JS backend
// does differently on purpose (storage export/import, HTTP through the embedder's
// transport, no files, no WebSockets). Prints one JSON summary line; exits 1 on any
// difference.
//
// usage: node tests/js/run.mjs PKG_DIR REPO_ROOT CASES_JSONL
//   CASES_JSONL: one {"plugin","function","args","expected"} per line, args and expected
//   as JSON text (so 64-bit integers keep every digit).
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import { spawn, spawnSync } from 'node:child_process';
import path from 'node:path';

const [pkgDir, root, casesFile] = process.argv.slice(2);
const require = createRequire(import.meta.url);
const { JsHost, setLogger } = require(path.resolve(pkgDir, 'tark_wasmer.js'));

const logs = [];
setLogger((level, target, message) => logs.push(`${level} ${target} ${message}`), 'info');

const pluginDir = (id) => path.join(root, 'tests', 'plugins', id);
function load(host, id) {
  const manifest = readFileSync(path.join(pluginDir(id), 'plugin.toml'), 'utf8');
  const wasm = readFileSync(path.join(pluginDir(id), 'plugin.wasm'));
  return host.load(manifest, wasm);
}

const failures = [];
const summary = { calls: 0, identical: 0, plugins: [], checks: {} };

// 1. The native transcript, call by call, on one host (storage carries over as natively).
const cases = readFileSync(casesFile, 'utf8').split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l));
const host = new JsHost();
for (const id of [...new Set(cases.map((c) => c.plugin))].sort()) {
  summary.plugins.push(load(host, id));
}
for (const c of cases) {
  summary.calls += 1;
  let got;
  try {
    got = host.call(c.plugin, c.function, c.args);
  } catch (e) {
    got = `threw: ${e && e.message}`;
  }
  if (got === c.expected) {
    summary.identical += 1;
  } else {
    failures.push({ plugin: c.plugin, function: c.function, args: c.args, expected: c.expected, got });
  }
}

// 2. What the JS backend does on purpose.
const check = (name, ok, detail) => {
  summary.checks[name] = ok;
  if (!ok) failures.push({ check: name, detail });
};

// Storage: export from one host, import into another.
{
  const a = new JsHost();
  load(a, 'legacy-provider');
  const init = a.call('legacy-provider', 'auth-init', JSON.stringify(['{"api_key":"sk-js"}']));
  const exported = a.exportStorage('legacy-provider');
  const b = new JsHost();
  load(b, 'legacy-provider');
  const before = b.call('legacy-provider', 'auth-status', '[]');
  b.importStorage('legacy-provider', exported);
  const after = b.call('legacy-provider', 'auth-status', '[]');
  check('storage_export_import', JSON.parse(exported).api_key === 'sk-js' && before !== after,
    { init, exported, before, after });
  let refused = false;
  try {
    b.importStorage('legacy-provider', JSON.stringify({ big: 'x'.repeat(17 * 1024 * 1024) }));
  } catch (e) {
    refused = /quota/.test(e.message);
  }
  check('storage_import_quota', refused, 'an import over the quota was accepted');
}

// Files: refused with the backend's reason (the plugin's fs code -3 becomes -13).
{
  const h = new JsHost();
  load(h, 'legacy-provider');
  logs.length = 0;
  const got = h.call('legacy-provider', 'auth-init', JSON.stringify(['{"api_key_file":"/tmp/key.txt"}']));
  check('fs_unavailable', /-13/.test(got) && logs.some((l) => /files are not available in the JS backend/.test(l)),
    { got, logs: logs.slice() });
}

// WebSockets: refused with the backend's reason.
{
  const h = new JsHost();
  load(h, 'legacy-channel');
  h.call('legacy-channel', 'auth-init', JSON.stringify(['{"access_token":"t","gateway_url":"ws://127.0.0.1:9/gw"}']));
  logs.length = 0;
  const got = h.call('legacy-channel', 'poll', '[]');
  check('ws_unavailable', /"err"/.test(got) && logs.some((l) => /WebSockets are not available in the JS backend/.test(l)),
    { got, logs: logs.slice() });
}

// HTTP: without a transport, a clear error; with one, the answer of a real local server
// (in its own process: the transport blocks this thread while the plugin waits).
{
  const h = new JsHost();
  load(h, 'legacy-provider');
  const server = spawn(process.execPath, ['-e', `
    const http = require('node:http');
    const s = http.createServer((req, res) => {
      if (req.url === '/old/v1/models') { res.writeHead(302, { location: '/v1/models' }); return res.end(); }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ data: [{ id: 'js-model' }], auth: req.headers.authorization || null }));
    });
    s.listen(0, '127.0.0.1', () => console.log(s.address().port));
  `], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise((resolve) => server.stdout.once('data', (d) => resolve(String(d).trim())));
  try {
    h.call('legacy-provider', 'auth-init', JSON.stringify([`{"api_key":"sk-http","base_url":"http://127.0.0.1:${port}/old"}`]));
    const without = h.call('legacy-provider', 'models', '[]');
    check('http_without_transport', /no HTTP transport/.test(without) || logs.some((l) => /no HTTP transport/.test(l)), { without });
    const hops = [];
    h.setHttpTransport((requestJson) => {
      const req = JSON.parse(requestJson);
      hops.push(req.url);
      const r = spawnSync(process.execPath, ['-e', `
        const req = JSON.parse(process.argv[1]);
        fetch(req.url, { method: req.method, headers: req.headers, body: req.body ?? undefined, redirect: 'manual' })
          .then(async (res) => console.log(JSON.stringify({ status: res.status, headers: [...res.headers], body: await res.text() })))
          .catch((e) => { console.error(String(e)); process.exit(1); });
      `, requestJson], { encoding: 'utf8' });
      if (r.status !== 0) throw new Error(r.stderr || 'fetch failed');
      return r.stdout;
    });
    const withTransport = h.call('legacy-provider', 'models', '[]');
    const models = JSON.parse(withTransport).ok;
    check('http_through_transport',
      Array.isArray(models) && models.length === 1 && models[0].id === 'js-model'
        && hops.length === 2 && hops[0].endsWith('/old/v1/models') && hops[1].endsWith('/v1/models'),
      { withTransport, hops });
    // The allowlist still decides: a redirect-free request to a host the plugin was not
    // granted never reaches the transport.
    hops.length = 0;
    h.call('legacy-provider', 'auth-init', JSON.stringify(['{"api_key":"k","base_url":"http://example.com"}']));
    const denied = h.call('legacy-provider', 'models', '[]');
    check('http_allowlist', hops.length === 0 && /"err"/.test(denied), { denied, hops });
  } finally {
    server.kill();
  }
}

console.log(JSON.stringify({ ...summary, failures }));
process.exit(failures.length === 0 ? 0 : 1);
