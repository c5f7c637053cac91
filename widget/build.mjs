// Builds the widget into dist/: widget.js (the loader, an IIFE for the script tag) and app.js
// (the rest, an ES module the loader imports on first open). The loader is built with app.js's
// content hash, so it asks for /widget/app.js?v=HASH and that URL can be cached forever.
// `--check` builds in memory and fails when the committed dist/ differs (the server embeds it).
import { build } from 'esbuild';
import { createHash } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';

const check = process.argv.includes('--check');
const common = { bundle: true, minify: true, write: false, target: ['es2020'], legalComments: 'none', charset: 'utf8', logLevel: 'warning' };

const app = await build({ ...common, entryPoints: ['src/app.ts'], format: 'esm' });
const appJs = app.outputFiles[0].contents;
const hash = createHash('sha256').update(appJs).digest('hex').slice(0, 16);
const loader = await build({ ...common, entryPoints: ['src/loader.ts'], format: 'iife', define: { __APP_HASH__: JSON.stringify(hash) } });
const loaderJs = loader.outputFiles[0].contents;

const files = { 'dist/widget.js': loaderJs, 'dist/app.js': appJs };
if (check) {
  let stale = [];
  for (const [path, bytes] of Object.entries(files)) {
    const committed = await readFile(new URL(path, import.meta.url)).catch(() => Buffer.alloc(0));
    if (!Buffer.from(bytes).equals(committed)) stale.push(path);
  }
  if (stale.length) {
    console.error(`stale: ${stale.join(', ')} differ from what src/ builds to; run \`npm run build\` in widget/ and commit dist/`);
    process.exit(1);
  }
  console.log('dist/ matches the sources');
} else {
  await mkdir(new URL('dist/', import.meta.url), { recursive: true });
  for (const [path, bytes] of Object.entries(files)) await writeFile(new URL(path, import.meta.url), bytes);
  const { gzipSync } = await import('node:zlib');
  for (const [path, bytes] of Object.entries(files)) {
    console.log(`${path}: ${bytes.length} bytes, ${gzipSync(bytes, { level: 9 }).length} gzipped`);
  }
  console.log(`app hash ${hash}`);
}
