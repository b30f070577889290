// Prints the size of tidings.js as a browser downloads it: minified (terser), then gzipped.
import { readFile } from "node:fs/promises";
import { gzipSync } from "node:zlib";
import { minify } from "terser";

/** The minified and the minified + gzipped size of tidings.js, in bytes. */
export async function size() {
  const source = await readFile(new URL("../tidings.js", import.meta.url), "utf8");
  const { code } = await minify(source, { module: true, compress: true, mangle: true });
  return { source: source.length, minified: code.length, gzipped: gzipSync(code, { level: 9 }).length };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { source, minified, gzipped } = await size();
  console.log(`tidings.js: ${source} bytes, ${minified} minified, ${gzipped} minified + gzipped`);
}
