// Every shell command in the docs is one a test runs. Each ```sh block of README.md and docs/*.md
// is preceded by a directive that says how:
//
//   <!-- doc-test: run -->             run here, command by command, in order (one shell
//                                      environment per file: variables carry over); a command
//                                      followed by `# {json}` comment lines must print that JSON
//   <!-- doc-test: background -->      started here in the background (stopped when the file is
//                                      done); the file's next block waits until every address
//                                      `127.0.0.1:PORT` / `--port PORT` / `-p PORT` accepts connections
//   <!-- doc-test: background until "TEXT" -->   the same, waiting for TEXT in its output
//   <!-- doc-test: start until "TEXT" -->        started, waited for (TEXT in its output), stopped
//   <!-- doc-test: in FILE -->         every command of the block is in FILE, a script CI runs
//
// A block without one fails the test. The blocks run in a scratch directory holding links to
// target/, scripts/ and deploy/, with target/debug (the built `timd`) first on PATH, SECRET set to
// a test key and TIMD_DATA_DIR to a scratch store; the ports the docs name (9000, 6379, …) are
// mapped onto free ones, the same way in every block of a file, and timd's default address
// (127.0.0.1:9000) too, through TIMD_LISTEN.
//
// Run alone: `cargo build -p timd-bin && node --test tests/docs/` (scripts/test.sh does).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const DOCS = ['README.md', ...readdirSync(path.join(ROOT, 'docs')).filter((f) => f.endsWith('.md')).sort().map((f) => `docs/${f}`)];
/** What CI runs: a script named in these (or one of them) is "run by the tests". */
const CI_ENTRY = ['.ci/run', 'scripts/test.sh'];
const SECRET = 'doc-test-key-not-secret';

/** The shell blocks of a Markdown file, each with the directive on the line before its fence. */
function shellBlocks(file) {
  const lines = readFileSync(path.join(ROOT, file), 'utf8').split('\n');
  const blocks = [];
  for (let i = 0; i < lines.length; i++) {
    const fence = /^```(sh|bash|shell|console)\s*$/.exec(lines[i]);
    if (!fence) {
      if (/^```/.test(lines[i])) while (++i < lines.length && !/^```/.test(lines[i]));
      continue;
    }
    let j = i - 1;
    while (j >= 0 && lines[j].trim() === '') j--;
    const m = j >= 0 ? /^<!-- doc-test: (.*?) -->$/.exec(lines[j].trim()) : null;
    const start = i + 1;
    const body = [];
    while (++i < lines.length && !/^```/.test(lines[i])) body.push(lines[i]);
    blocks.push({ file, line: start, directive: m ? m[1] : null, text: body.join('\n') });
  }
  return blocks;
}

/** A block's commands: continuation lines joined, each with the `# …` comment lines after it. */
function commands(text) {
  const out = [];
  let cur = null;
  for (const line of text.split('\n')) {
    if (cur && cur.open) {
      cur.cmd += '\n' + line;
      cur.open = /\\$/.test(line);
      continue;
    }
    if (/^\s*#/.test(line)) {
      if (cur) cur.comment.push(line.replace(/^\s*# ?/, ''));
      continue;
    }
    if (line.trim() === '') { cur = null; continue; }
    cur = { cmd: line, open: /\\$/.test(line), comment: [] };
    out.push(cur);
  }
  return out;
}

/** The JSON a command's comment promises, or null when it shows no complete JSON. */
function expectedJson(comment) {
  if (comment.length === 0 || !comment[0].trimStart().startsWith('{')) return null;
  const text = comment.join('\n');
  if (text.includes('…')) return null;
  try { return JSON.parse(text); } catch { return null; }
}

const PORT_RE = /(?<=(?:127\.0\.0\.1|localhost):|--port |-p )(\d{4,5})\b/g;

/** `n` distinct free ports (all held open until every one is found, so none repeats). */
async function freePorts(n) {
  const servers = await Promise.all(Array.from({ length: n }, () => new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => resolve(s));
  })));
  const ports = servers.map((s) => s.address().port);
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  return ports;
}

function connects(port) {
  return new Promise((resolve) => {
    const c = net.connect(port, '127.0.0.1');
    c.once('connect', () => { c.destroy(); resolve(true); });
    c.once('error', () => resolve(false));
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Whether any process of the group `pgid` is still there. */
function groupAlive(pgid) {
  try { process.kill(-pgid, 0); return true; } catch { return false; }
}

/** Stops background blocks: SIGTERM to each one's whole process group (the servers it started
 * too), SIGKILL to what is left after 5 s; returns once every process of the groups is gone. */
async function stop(procs) {
  for (const p of procs) {
    try { process.kill(-p.pid, 'SIGTERM'); } catch { /* already gone */ }
  }
  const deadline = Date.now() + 5000;
  while (procs.some((p) => groupAlive(p.pid)) && Date.now() < deadline) await sleep(50);
  for (const p of procs) {
    try { process.kill(-p.pid, 'SIGKILL'); } catch { /* gone */ }
  }
  while (procs.some((p) => groupAlive(p.pid))) await sleep(50);
}

/** Background blocks running now: stopped if this process is told to end (a test timeout,
 * Ctrl-C), since they run in process groups of their own. */
const running = new Set();
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, () => {
    for (const p of running) {
      try { process.kill(-p.pid, 'SIGKILL'); } catch { /* gone */ }
    }
    process.exit(1);
  });
}

/** Runs one file's blocks in a scratch directory; returns what failed (nothing: all ran). */
async function runFile(file, blocks) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tim-doc-'));
  for (const link of ['target', 'scripts', 'deploy', 'www', 'pkg', 'tools']) {
    if (existsSync(path.join(ROOT, link))) symlinkSync(path.join(ROOT, link), path.join(dir, link));
  }
  const named = [...new Set(blocks.flatMap((b) => [...b.text.matchAll(PORT_RE)].map((m) => m[1])))];
  const free = await freePorts(named.length);
  const ports = new Map(named.map((p, i) => [p, String(free[i])]));
  const mapPorts = (s) => s.replace(PORT_RE, (p) => ports.get(p) ?? p);
  const envFile = path.join(dir, '.env');
  writeFileSync(envFile, '');
  const env = {
    ...process.env,
    PATH: `${path.join(ROOT, 'target/debug')}:${process.env.PATH}`,
    SECRET,
    TIMD_DATA_DIR: path.join(dir, 'data'),
    TIMD_LOG_STYLE: 'never',
  };
  delete env.TIMD_LISTEN;
  if (ports.has('9000')) env.TIMD_LISTEN = `127.0.0.1:${ports.get('9000')}`;
  const background = [];
  let pending = [];
  const failures = [];
  const waitReady = async () => {
    for (const { proc, ports: ps, until, log, where } of pending) {
      const deadline = Date.now() + 300_000;
      for (;;) {
        if (proc.exitCode !== null) { failures.push(`${where}: exited ${proc.exitCode} before it was ready:\n${log.text.slice(-2000)}`); break; }
        const ready = until ? log.text.includes(until) : (await Promise.all(ps.map(connects))).every(Boolean);
        if (ready) break;
        if (Date.now() > deadline) { failures.push(`${where}: not ready after 300 s:\n${log.text.slice(-2000)}`); break; }
        await sleep(100);
      }
    }
    pending = [];
  };
  try {
    for (const b of blocks) {
      const where = `${b.file}:${b.line}`;
      const text = mapPorts(b.text);
      const bg = /^(background|start)(?: until "(.*)")?$/.exec(b.directive);
      if (bg) {
        await waitReady();
        const log = { text: '' };
        const proc = spawn('bash', ['-c', `set -a; . ${envFile}; set +a\n${text}\nwait`], { cwd: dir, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
        running.add(proc);
        proc.stdout.on('data', (d) => { log.text += d; });
        proc.stderr.on('data', (d) => { log.text += d; });
        const ps = [...new Set([...text.matchAll(PORT_RE)].map((m) => Number(m[1])))];
        pending.push({ proc, ports: ps, until: bg[2], log, where });
        if (bg[1] === 'start') {
          await waitReady();
          await stop([proc]);
        } else {
          background.push(proc);
        }
        continue;
      }
      await waitReady();
      for (const c of commands(text)) {
        // `set -a`: the block's own assignments are exported, so the next command sees them.
        const script = `set -a; . ${envFile}; set -eo pipefail\n${c.cmd}\nexport -p > ${envFile}`;
        const r = spawnSync('bash', ['-c', script], { cwd: dir, env, encoding: 'utf8', timeout: 120_000 });
        if (r.status !== 0) {
          failures.push(`${where}: \`${c.cmd}\` exited ${r.status ?? r.signal}:\n${r.stdout}${r.stderr}`);
          continue;
        }
        const want = expectedJson(c.comment);
        if (want !== null) {
          let got;
          try { got = JSON.parse(r.stdout); } catch { failures.push(`${where}: \`${c.cmd}\` printed no JSON: ${r.stdout}`); continue; }
          try { assert.deepStrictEqual(got, want); } catch { failures.push(`${where}: \`${c.cmd}\` printed\n  ${JSON.stringify(got)}\nbut the doc says\n  ${JSON.stringify(want)}`); }
        }
      }
    }
    await waitReady();
  } finally {
    await stop(background);
    rmSync(dir, { recursive: true, force: true, maxRetries: 5 });
  }
  return failures;
}

const all = DOCS.flatMap(shellBlocks);

test('every shell block in the docs says how a test runs it', () => {
  const missing = all.filter((b) => !b.directive || !/^(run|(background|start)( until ".*")?|in \S+)$/.test(b.directive));
  assert.deepEqual(missing.map((b) => `${b.file}:${b.line}`), [], 'blocks without a valid <!-- doc-test: … --> line before them');
});

test('blocks that live in a script: every command is in it, and CI runs that script', () => {
  const ci = CI_ENTRY.map((f) => readFileSync(path.join(ROOT, f), 'utf8')).join('\n');
  const norm = (s) => s.replace(/\\\n\s*/g, ' ').replace(/\s+/g, ' ').trim();
  for (const b of all.filter((x) => x.directive?.startsWith('in '))) {
    const script = b.directive.slice(3);
    assert.ok(CI_ENTRY.includes(script) || ci.includes(script), `${b.file}:${b.line}: ${script} is not run by ${CI_ENTRY.join(' / ')}`);
    const body = norm(readFileSync(path.join(ROOT, script), 'utf8'));
    for (const c of commands(b.text)) {
      assert.ok(body.includes(norm(c.cmd)), `${b.file}:${b.line}: \`${c.cmd}\` is not in ${script}`);
    }
  }
});

for (const file of DOCS) {
  const blocks = shellBlocks(file).filter((b) => b.directive && !b.directive.startsWith('in '));
  if (blocks.length === 0) continue;
  test(`the commands of ${file} run as written`, { timeout: 600_000 }, async () => {
    const failures = await runFile(file, blocks);
    assert.deepEqual(failures, []);
  });
}
