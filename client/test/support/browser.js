// Headless Chromium for the browser tests: Debian's /usr/bin/chromium (or $CHROMIUM), driven by
// playwright-core, which downloads no browser of its own.
import { chromium } from "playwright-core";

/** Launches Chromium; without a sandbox when running as root (it refuses one then). */
export function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: process.getuid?.() === 0 ? ["--no-sandbox"] : [],
  });
}
