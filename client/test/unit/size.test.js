// tidings.js stays small: a budget on what a browser downloads (README gives the current size).
import assert from "node:assert/strict";
import { test } from "node:test";

import { size } from "../size.js";

/** The budget, minified + gzipped, in bytes. */
const BUDGET = 3.5 * 1024;

test(`tidings.js is under ${BUDGET} bytes minified and gzipped`, async () => {
  const { gzipped } = await size();
  assert.ok(gzipped < BUDGET, `tidings.js is ${gzipped} bytes minified + gzipped, over ${BUDGET}`);
});
