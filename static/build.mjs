// build.mjs: bundles and minifies the pages' scripts and stylesheet into
// static/dist/ with esbuild, writes a gzip copy of each file beside it
// (file.gz, for servers that send precompressed files), and prints sizes.
//
//   node build.mjs            build once
//   node build.mjs --check    also fail if the arena page's first load
//                             (HTML + CSS + JS, gzipped) exceeds the budget
import { build } from 'esbuild';
import { readFileSync, writeFileSync, mkdirSync, rmSync, readdirSync, renameSync }
  from 'node:fs';
import { gzipSync, constants } from 'node:zlib';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, 'dist');
const tmp = join(here, `dist.tmp-${process.pid}`);
const BUDGET = 150 * 1024; // the arena page's first load, bytes on the wire

rmSync(tmp, { recursive: true, force: true });
mkdirSync(tmp, { recursive: true });

const common = {
  outdir: tmp,
  bundle: true,
  minify: true,
  format: 'esm',
  target: ['es2020', 'chrome100', 'firefox100', 'safari15'],
  legalComments: 'eof',
  sourcemap: false,
  logLevel: 'warning',
};
// The arena page alone, split: arena.js plus the Markdown chunk it imports
// once it is wired. (Built apart so it shares no chunk with the others.)
await build({ ...common, entryPoints: { arena: join(here, 'src/arena.js') },
              splitting: true, chunkNames: '[name]-[hash]' });
await build({
  ...common,
  entryPoints: {
    leaderboard: join(here, 'src/leaderboard.js'),
    admin: join(here, 'src/admin.js'),
    style: join(here, 'src/style.css'),
  },
});

const sizes = {};
for (const f of readdirSync(tmp)) {
  const buf = readFileSync(join(tmp, f));
  const gz = gzipSync(buf, { level: constants.Z_BEST_COMPRESSION });
  writeFileSync(join(tmp, f + '.gz'), gz);
  sizes[f] = { bytes: buf.length, gzip: gz.length };
}
writeFileSync(join(tmp, 'sizes.json'), JSON.stringify(sizes, null, 2) + '\n');

// Swap in the new folder whole, so a server never sees half a build (and
// two builds running at once each install a complete one).
const old = join(here, `dist.old-${process.pid}`);
for (let attempt = 0; ; attempt++) {
  try { renameSync(out, old); } catch (_) { /* first build, or another just moved it */ }
  try {
    renameSync(tmp, out);
    break;
  } catch (e) {
    // Another build put its dist/ in between: move that one aside too.
    if (attempt >= 10 || !['ENOTEMPTY', 'EEXIST'].includes(e.code)) throw e;
    rmSync(old, { recursive: true, force: true });
  }
}
rmSync(old, { recursive: true, force: true });

const gz = (p) => gzipSync(readFileSync(join(here, p))).length;
const chunks = Object.keys(sizes).filter((f) => /^(markdown|chunk)-/.test(f));
const first = gz('index.html') + gz('theme.js') + gz('favicon.svg') + sizes['style.css'].gzip +
              sizes['arena.js'].gzip + chunks.reduce((n, f) => n + sizes[f].gzip, 0);
for (const [f, s] of Object.entries(sizes))
  console.log(`dist/${f.padEnd(16)} ${String(s.bytes).padStart(8)} B ` +
              `${String(s.gzip).padStart(8)} B gzip`);
console.log(`arena page first load: ${first} B gzip (budget ${BUDGET} B)`);
if (process.argv.includes('--check') && first > BUDGET) {
  console.error('build.mjs: the arena page is over its size budget');
  process.exit(1);
}
