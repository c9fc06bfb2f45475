// The TLS deployment of deploy/ as the tests run it: a test CA and a server certificate for
// `localhost` made here with openssl, the shipped nginx and HAProxy templates filled in and run
// as this process's children, and production-mode timd nodes behind them (loopback only,
// `--trusted-proxies 127.0.0.1`, no demo mode).
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, createReadStream, statSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { tmpdir } from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { freePort, waitFor } from './webdriver.mjs';
import { root, SDKAPPID, KEY, track, exited } from './timd.mjs';

const openssl = (dir, ...args) => execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });

/**
 * A test CA and a certificate for `localhost` / 127.0.0.1 it signed, in a new temporary directory
 * (keys never leave it). Returns the paths, the CA's PEM, and the SHA-256 of the server key's
 * SubjectPublicKeyInfo in base64 (Chromium's `--ignore-certificate-errors-spki-list`).
 */
export function makeCerts() {
  const dir = mkdtempSync(path.join(tmpdir(), 'tim-tls-'));
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  openssl(dir, 'req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2',
    '-subj', '/CN=tim-wasm test CA', '-addext', 'basicConstraints=critical,CA:TRUE',
    '-addext', 'keyUsage=critical,keyCertSign,cRLSign');
  openssl(dir, 'req', ...ec, '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=localhost');
  writeFileSync(path.join(dir, 'server.ext'), ['subjectAltName=DNS:localhost,IP:127.0.0.1',
    'basicConstraints=critical,CA:FALSE', 'keyUsage=critical,digitalSignature', 'extendedKeyUsage=serverAuth', ''].join('\n'));
  openssl(dir, 'x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial',
    '-out', 'server.pem', '-days', '2', '-extfile', 'server.ext');
  const file = (f) => path.join(dir, f);
  // HAProxy's `crt`: the chain, then the key, in one file.
  writeFileSync(file('server-combined.pem'), readFileSync(file('server.pem')) + readFileSync(file('server.key')));
  const der = openssl(dir, 'pkey', '-in', 'server.key', '-pubout', '-outform', 'DER');
  const spki = execFileSync('openssl', ['dgst', '-sha256', '-binary'], { input: der }).toString('base64');
  return {
    dir, ca: readFileSync(file('ca.pem')), cert: file('server.pem'), key: file('server.key'),
    combined: file('server-combined.pem'), spki, remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/**
 * `template` with every `{{NAME}}` outside `#` comments replaced by `values[NAME]`; one without
 * a value throws.
 */
export function fill(template, values) {
  return template.split('\n').map((line) => (line.trimStart().startsWith('#') ? line
    : line.replace(/\{\{(\w+)\}\}/g, (m, name) => {
      if (!(name in values)) throw new Error(`no value for ${m}`);
      return values[name];
    }))).join('\n');
}

/**
 * A production-mode timd node on a free loopback port (`--redis URL` in `args` for cluster
 * mode), its stderr kept (RUST_LOG=info) for the test to read. Returns { port, log(), restart(), stop() }.
 */
export async function startNode(args = []) {
  const port = await freePort();
  const dataDir = mkdtempSync(path.join(tmpdir(), 'tim-tls-data-'));
  let log = '';
  let child;
  const spawnNode = async () => {
    child = track(spawn(process.env.TIMD_BIN || path.join(root, 'target/debug/timd'), ['serve',
      '--listen', `127.0.0.1:${port}`, '--sdkappid', String(SDKAPPID), '--data-dir', dataDir,
      '--trusted-proxies', '127.0.0.1', ...args],
    { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, TIMD_KEY: KEY, RUST_LOG: process.env.TLS_RUST_LOG || 'info', NO_COLOR: '1' } }));
    child.stderr.on('data', (d) => { log += d; });
    await waitFor(async () => (await fetch(`http://127.0.0.1:${port}/healthz`)).ok, { what: 'timd' })
      .catch((e) => { child.kill('SIGKILL'); throw new Error(`${e.message}: ${log}`); });
  };
  await spawnNode().catch((e) => { rmSync(dataDir, { recursive: true, force: true }); throw e; });
  return {
    port,
    log: () => log,
    /** SIGTERM (timd closes its sockets with 1012 "server restarting"), then the same port and data. */
    async restart() { child.kill('SIGTERM'); await exited(child); await spawnNode(); },
    async stop() { child.kill('SIGTERM'); await exited(child); rmSync(dataDir, { recursive: true, force: true }); },
  };
}

/**
 * A plain static file server for HAProxy's `app` backend (HAProxy serves no files): the test
 * pages at /, the package at /pkg/. nginx serves the same files itself.
 */
export async function startStatic(wwwRoot, pkgDir) {
  const types = { '.html': 'text/html', '.js': 'text/javascript', '.mjs': 'text/javascript', '.wasm': 'application/wasm', '.json': 'application/json' };
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, 'http://x');
    const [base, rel] = url.pathname.startsWith('/pkg/') ? [pkgDir, url.pathname.slice(5)] : [wwwRoot, url.pathname.slice(1)];
    const file = path.join(base, path.normalize(`/${rel}`));
    try {
      if (!statSync(file).isFile()) throw new Error('not a file');
    } catch { res.writeHead(404).end('not found'); return; }
    res.writeHead(200, { 'content-type': types[path.extname(file)] || 'application/octet-stream' });
    createReadStream(file).pipe(res);
  });
  const port = await freePort();
  await new Promise((r) => server.listen(port, '127.0.0.1', r));
  return { port, stop: () => new Promise((r) => server.close(r)) };
}

/**
 * Runs the shipped `deploy/nginx/timd.conf` or `deploy/haproxy/timd.cfg`, filled in, on a free
 * port in front of `nodes`; `app` is the static server HAProxy sends everything else to.
 * Resolves once `https://localhost:PORT/healthz` answers through it (checked against the CA).
 */
export async function startProxy(kind, { certs, nodes, app, wwwRoot, pkgDir }) {
  const port = await freePort();
  const prefix = mkdtempSync(path.join(tmpdir(), `tim-${kind}-`));
  let bin;
  let args;
  if (kind === 'nginx') {
    const conf = fill(readFileSync(path.join(root, 'deploy/nginx/timd.conf'), 'utf8'), {
      LISTEN: `127.0.0.1:${port}`, CERT: certs.cert, KEY: certs.key, PREFIX: prefix, WWW_ROOT: wwwRoot, PKG_DIR: pkgDir,
      UPSTREAMS: nodes.map((n) => `server 127.0.0.1:${n.port};`).join('\n        '),
    });
    writeFileSync(path.join(prefix, 'nginx.conf'), conf);
    bin = process.env.NGINX_BIN || '/usr/sbin/nginx';
    args = ['-c', path.join(prefix, 'nginx.conf'), '-p', prefix, '-e', path.join(prefix, 'error.log'), '-g', 'daemon off;'];
  } else {
    const conf = fill(readFileSync(path.join(root, 'deploy/haproxy/timd.cfg'), 'utf8'), {
      LISTEN: `127.0.0.1:${port}`, PEM: certs.combined, APP: `127.0.0.1:${app.port}`,
      SERVERS: nodes.map((n, i) => `server timd${i + 1} 127.0.0.1:${n.port} check`).join('\n    '),
    });
    writeFileSync(path.join(prefix, 'haproxy.cfg'), conf);
    bin = process.env.HAPROXY_BIN || '/usr/sbin/haproxy';
    args = ['-f', path.join(prefix, 'haproxy.cfg'), '-db'];
  }
  let out = '';
  const child = track(spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] }));
  child.stdout.on('data', (d) => { out += d; });
  child.stderr.on('data', (d) => { out += d; });
  const origin = `https://localhost:${port}`;
  await waitFor(async () => {
    if (child.exitCode !== null) throw new Error('exited');
    return (await get(origin, '/healthz', certs.ca)).status === 200;
  }, { what: kind, timeoutMs: 10000 }).catch(async (e) => {
    child.kill('SIGKILL');
    await exited(child);
    rmSync(prefix, { recursive: true, force: true });
    throw new Error(`${kind} did not start (${e.message}): ${out}`);
  });
  return {
    kind, port, origin,
    async stop() { child.kill('SIGTERM'); await exited(child); rmSync(prefix, { recursive: true, force: true }); },
  };
}

/** GET (or POST `body`) over https, the server's chain verified against `ca`. */
export function get(origin, pathname, ca, { method = 'GET', body } = {}) {
  return new Promise((resolve, reject) => {
    const req = https.request(`${origin}${pathname}`, { method, ca, agent: false, headers: body ? { 'content-type': 'application/json' } : {} }, (res) => {
      let text = '';
      res.on('data', (d) => { text += d; });
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

/**
 * Opens `wss://localhost:PORT/ws` by hand (TLS, then the HTTP/1.1 upgrade) with extra request
 * `headers` (a forged X-Forwarded-For), then sends the SDK's `"ping"`. Resolves `{ pong: true }`
 * if timd admitted the socket and answered, or `{ close: CODE }` if it refused it.
 */
export function rawSocket(port, ca, headers = {}) {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ca });
    let buf = Buffer.alloc(0);
    let upgraded = false;
    const timer = setTimeout(() => { socket.destroy(); reject(new Error('no answer from the socket within 10 s')); }, 10000);
    const done = (v) => { clearTimeout(timer); resolve({ ...v, socket }); };
    socket.on('error', (e) => { clearTimeout(timer); reject(e); });
    socket.on('secureConnect', () => {
      const lines = ['GET /ws HTTP/1.1', `Host: localhost:${port}`, 'Upgrade: websocket', 'Connection: Upgrade',
        'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==', 'Sec-WebSocket-Version: 13',
        ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`), '', ''];
      socket.write(lines.join('\r\n'));
    });
    socket.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      if (!upgraded) {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        const head = buf.subarray(0, end).toString();
        if (!head.startsWith('HTTP/1.1 101')) { clearTimeout(timer); socket.destroy(); reject(new Error(`no upgrade: ${head}`)); return; }
        upgraded = true;
        buf = buf.subarray(end + 4);
        // A masked text frame: "ping" (JSON), as the SDK sends it.
        const payload = Buffer.from('"ping"');
        const mask = Buffer.from([1, 2, 3, 4]);
        socket.write(Buffer.concat([Buffer.from([0x81, 0x80 | payload.length]), mask, payload.map((b, i) => b ^ mask[i % 4])]));
      }
      // Unmasked server frames with short payloads: opcode, length, payload.
      while (buf.length >= 2 && buf.length >= 2 + (buf[1] & 0x7f)) {
        const opcode = buf[0] & 0x0f;
        const payload = buf.subarray(2, 2 + (buf[1] & 0x7f));
        buf = buf.subarray(2 + payload.length);
        if (opcode === 0x8) return done({ close: payload.readUInt16BE(0) });
        if (opcode === 0x1 && payload.toString() === '"pong"') return done({ pong: true });
      }
    });
  });
}
