// Consumer projects made from tests/consumers/templates/: copied into a temp dir, given the
// seed page (templates/seed-app.js as src/index.js), and `npm install`ed with the packed
// tarball, the way a web developer adds a package to a project.
import { spawn } from 'node:child_process';
import { cpSync, readFileSync, writeFileSync, mkdirSync, existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { resolveEntry } from '../../scripts/check-package.mjs';
import { waitFor } from '../e2e/webdriver.mjs';

const templates = path.join(path.dirname(fileURLToPath(import.meta.url)), 'templates');

// Injected into each page's <!--error-catcher-->: records what keeps the page from starting (a
// file that failed to load, an exception), so a failing test says why instead of timing out.
const ERROR_CATCHER = `<script>
  window.pageErrors = [];
  addEventListener('error', (e) => pageErrors.push(e.message
    ? \`\${e.message} (\${e.filename}:\${e.lineno})\`
    : \`failed to load \${e.target && (e.target.src || e.target.href || e.target.tagName)}\`), true);
  addEventListener('unhandledrejection', (e) => pageErrors.push(\`unhandled rejection: \${(e.reason && (e.reason.stack || e.reason.message)) || e.reason}\`));
</script>`;

// Bundlers colour their errors even when piped; the messages are read as plain text.
export const tail = (s, n = 40) => s.replace(/\x1b\[[0-9;]*m/g, '').trim().split('\n').slice(-n).join('\n');

/** Runs a command; resolves to { code, output } (stdout and stderr together). */
export function run(cmd, args, { cwd, env } = {}) {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { cwd, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d) => { output += d; });
    child.stderr.on('data', (d) => { output += d; });
    child.on('error', (e) => resolve({ code: -1, output: `${output}\n${e.message}` }));
    child.on('close', (code, signal) => resolve({ code: code ?? signal, output }));
  });
}

/** Runs a command and throws with its output's tail when it fails. */
export async function mustRun(what, cmd, args, opts) {
  const { code, output } = await run(cmd, args, opts);
  if (code !== 0) throw new Error(`${what} failed (${cmd} ${args.join(' ')}, exit ${code}):\n${tail(output)}`);
  return output;
}

/** The templates whose page is the seed sample as src/index.js. */
const SEED_PAGES = ['plain', 'vite', 'webpack', 'esbuild'];

/**
 * Creates the project `template` in `dir` and installs `tarball` into it with the template's
 * pinned devDependencies (from npm's cache where possible). `files`: more files to write into
 * it first ({ relative path: contents }).
 */
export async function createProject(template, dir, tarball, { files = {} } = {}) {
  cpSync(path.join(templates, template), dir, { recursive: true });
  if (template === 'ssr') cpSync(path.join(templates, 'node/guard.mjs'), path.join(dir, 'guard.mjs'));
  for (const [f, body] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(dir, f)), { recursive: true });
    writeFileSync(path.join(dir, f), body);
  }
  if (template === 'script-tag') {
    // The same seed sample against the global TIM the script-tag build defines: all but its
    // import line, as a classic script.
    mkdirSync(path.join(dir, 'src'), { recursive: true });
    const sample = readFileSync(path.join(templates, 'seed-app.js'), 'utf8');
    const global = sample.replace(/^import TIM from 'tim-wasm';\n/m, '');
    if (global === sample) throw new Error('seed-app.js has no `import TIM from \'tim-wasm\';` line to drop');
    writeFileSync(path.join(dir, 'src/seed-global.js'), global);
  } else if (SEED_PAGES.includes(template)) {
    mkdirSync(path.join(dir, 'src'), { recursive: true });
    cpSync(path.join(templates, 'seed-app.js'), path.join(dir, 'src/index.js'));
  }
  const html = path.join(dir, 'index.html');
  if (existsSync(html)) {
    writeFileSync(html, readFileSync(html, 'utf8').replace('<!--error-catcher-->', ERROR_CATCHER));
  }
  await mustRun(`npm install of the tarball in the ${template} project`, 'npm',
    ['install', tarball, '--prefer-offline', '--no-audit', '--no-fund', '--loglevel=error'], { cwd: dir });
  if (template === 'script-tag') {
    // <script src> of the file CDNs serve for the bare name (package.json's "unpkg").
    const pkg = JSON.parse(readFileSync(path.join(dir, 'node_modules/tim-wasm/package.json'), 'utf8'));
    if (typeof pkg.unpkg !== 'string') throw new Error('the installed package.json names no "unpkg" script');
    const html = path.join(dir, 'index.html');
    writeFileSync(html, readFileSync(html, 'utf8').replace('__SCRIPT__', path.posix.normalize(pkg.unpkg)));
  }
  if (template === 'plain') {
    // The import map points 'tim-wasm' at the entry that package.json's "exports" names.
    const pkg = JSON.parse(readFileSync(path.join(dir, 'node_modules/tim-wasm/package.json'), 'utf8'));
    const entry = resolveEntry(pkg);
    if (!entry) throw new Error('the installed package.json names no entry for the import map');
    const html = path.join(dir, 'index.html');
    writeFileSync(html, readFileSync(html, 'utf8').replace('__ENTRY__', entry.replace(/^\.\//, '')));
  }
  return dir;
}

/** Copies the template's index.html (with the error catcher) into the build output dir. */
export function htmlIntoDist(dir, dist = 'dist') {
  if (!existsSync(path.join(dir, dist))) throw new Error(`the build wrote no ${dist}/`);
  cpSync(path.join(dir, 'index.html'), path.join(dir, dist, 'index.html'));
  return path.join(dir, dist);
}

/**
 * Starts a long-running server process (a bundler's dev or preview server) and waits until
 * `origin` answers; resolves to { origin, output(), stop() }.
 */
export async function startServer(what, cmd, args, { cwd, origin }) {
  const child = spawn(cmd, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NO_COLOR: '1', FORCE_COLOR: '0' } });
  let output = '';
  child.stdout.on('data', (d) => { output += d; });
  child.stderr.on('data', (d) => { output += d; });
  const exited = new Promise((r) => child.once('exit', r));
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    const t = setTimeout(() => child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(t);
  };
  try {
    const state = await waitFor(async () => (child.exitCode !== null || child.signalCode !== null
      ? 'exited' : (await fetch(origin)).ok && 'up'), { what, timeoutMs: 60000, intervalMs: 200 });
    if (state === 'exited') throw new Error(`exited with ${child.exitCode ?? child.signalCode}`);
  } catch (e) {
    await stop();
    throw new Error(`${what} did not start (${e.message}):\n${tail(output)}`);
  }
  return { origin, output: () => output, stop };
}
