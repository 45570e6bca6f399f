// Trunk's post-build hook (Trunk.toml): minifies the page's inline script (index.html,
// `type="text/x-inline"`, which trunk's HTML minifier leaves alone) with terser, and makes it a
// plain script again. Trunk's own minifier (minify-js) writes that script differently from one
// build to the next: it hoists repeated values in hash order, which moves the page's compressed
// size by about ten bytes, back and forth across the first-load budget. Terser writes the same
// bytes every time.
import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

const page = join(process.env.TRUNK_STAGING_DIR, "index.html");
const html = readFileSync(page, "utf8");
const found = /<script type="?text\/x-inline"?>([\s\S]*?)<\/script>/.exec(html);
if (!found) throw new Error(`${page} has no <script type="text/x-inline">`);
const minified = execFileSync("terser", ["--compress", "--mangle"], { input: found[1] });
writeFileSync(page, html.replace(found[0], () => `<script>${minified.toString().trim()}</script>`));
