// A production SSR server in plain Node (node:http): renders each page with the built server
// entry and serves the built client. The page globals the server side reads are recorded from
// before the app is imported (guard.mjs) and answered at /__touched.
//   node server.mjs PORT
import http from 'node:http';
import { readFileSync, statSync, createReadStream } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { installGuard } from './guard.mjs';

const root = path.dirname(fileURLToPath(import.meta.url));
const client = path.join(root, 'dist/client');
const touched = installGuard();
const { render } = await import('./dist/server/entry-server.js');
const template = readFileSync(path.join(client, 'index.html'), 'utf8');
const TYPES = { '.js': 'text/javascript', '.css': 'text/css', '.html': 'text/html; charset=utf-8' };

const server = http.createServer((req, res) => {
  const { pathname } = new URL(req.url, 'http://x');
  if (pathname === '/__touched') {
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(touched));
    return;
  }
  if (pathname === '/') {
    const html = template.replace('<!--app-html-->', render());
    res.writeHead(200, { 'content-type': TYPES['.html'], 'cache-control': 'no-store' }).end(html);
    return;
  }
  const file = path.join(client, pathname);
  if (!file.startsWith(client) || !statSync(file, { throwIfNoEntry: false })?.isFile()) {
    res.writeHead(404).end();
    return;
  }
  res.writeHead(200, { 'content-type': TYPES[path.extname(file)] || 'application/octet-stream' });
  createReadStream(file).pipe(res);
});
server.listen(Number(process.argv[2]), '127.0.0.1', () => console.log('listening'));
