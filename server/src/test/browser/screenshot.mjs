// A screenshot of the Sluice dashboard after a timed wait, in Debian's headless Chromium through
// Playwright (playwright-core, no browser download):
//
//   node screenshot.mjs URL OUT.png [SECONDS]     (default: wait 5 s)
//
// The page's event stream never ends, so "wait until the network is idle" (and Chromium's own
// --virtual-time-budget) waits for ever: this waits until the page is live, then SECONDS more so
// the charts have points, then shoots the full page. CHROMIUM overrides the browser path
// (default /usr/bin/chromium). docs/operations.md shows how to run it.
import { chromium } from "playwright-core";

const [url, out, seconds = "5"] = process.argv.slice(2);
if (!url || !out || !(Number(seconds) >= 0)) {
  console.error("usage: node screenshot.mjs URL OUT.png [SECONDS]");
  process.exit(2);
}
let browser;
try {
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"],
  });
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  await page.goto(url);
  await page.waitForFunction(() => document.querySelector('[data-testid="conn-status"]')?.textContent === "live",
    null, { timeout: 15000 });
  await page.waitForTimeout(Number(seconds) * 1000);
  await page.screenshot({ path: out, fullPage: true });
  console.log(out);
} catch (e) {
  console.error(`screenshot failed: ${e.message}`);
  process.exitCode = 1;
} finally {
  if (browser) await browser.close();
}
