// The reconnect delay: full jitter under a doubling cap.
import assert from "node:assert/strict";
import { test } from "node:test";

import { backoff } from "../../tidings.js";

test("the delay is random below a cap that doubles from minDelay up to maxDelay", () => {
  const options = { minDelay: 500, maxDelay: 30000 };
  const caps = [0, 1, 2, 3, 6, 7, 20].map((n) => backoff(n, options, () => 0.999999));
  assert.deepEqual(caps, [499, 999, 1999, 3999, 29999, 29999, 29999]);
  assert.equal(backoff(4, options, () => 0), 0);
});

test("the defaults are 500 ms and 30 s, and Math.random spreads retries", () => {
  const delays = Array.from({ length: 200 }, () => backoff(10));
  assert.ok(delays.every((d) => d >= 0 && d < 30000));
  assert.ok(new Set(delays).size > 100, "jitter spreads the delays");
});
