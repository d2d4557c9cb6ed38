// Drives the Sluice dashboard in Debian's headless Chromium through Playwright (playwright-core,
// no browser download). Run by DashboardBrowserIT against a real coordinator under load:
//
//   node dashboard-check.mjs URL RESOURCE ADMIN_KEY SCREENSHOT_PATH
//
// Checks that the page goes live, that the resource's numbers move and its chart fills, that a
// pause without a key is refused on the page, then pauses the resource with the admin key and
// waits for the paused badge. Prints one JSON line of what it saw; exits 1 with a message on any
// failure. CHROMIUM overrides the browser path (default /usr/bin/chromium).
import { chromium } from "playwright-core";

const [url, resource, adminKey, screenshot] = process.argv.slice(2);
if (!url || !resource || !adminKey || !screenshot) {
  console.error("usage: node dashboard-check.mjs URL RESOURCE ADMIN_KEY SCREENSHOT_PATH");
  process.exit(2);
}

const tid = (id) => `[data-testid="${id}"]`;
let browser;
try {
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
      "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"],
    // Playwright gives every launch a fresh, temporary profile of its own.
  });
  const page = await browser.newPage({ viewport: { width: 1280, height: 760 } });
  const consoleErrors = [];
  page.on("console", (m) => {
    // The refused pause below logs its 401 as a failed resource load: expected, not a page error.
    if (m.type() === "error" && !m.text().includes("status of 401")) consoleErrors.push(m.text());
  });
  page.on("pageerror", (e) => consoleErrors.push(String(e)));
  await page.goto(url);

  await page.waitForFunction((s) => document.querySelector(s)?.textContent === "live", tid("conn-status"),
    { timeout: 15000 });
  const granted = async () => Number(await page.textContent(tid(`granted-${resource}`)));
  await page.waitForFunction((s) => Number(document.querySelector(s)?.textContent) > 0, tid(`granted-${resource}`),
    { timeout: 15000 });
  const first = await granted();
  await page.waitForFunction(([s, n]) => Number(document.querySelector(s)?.textContent) > n,
    [tid(`granted-${resource}`), first], { timeout: 15000 });
  const second = await granted();
  const chart = tid(`chart-${resource}-requests`);
  // Some seconds of history, so the chart (and the screenshot) shows a line.
  await page.waitForFunction((s) => Number(document.querySelector(s)?.dataset.points) >= 8, chart, { timeout: 20000 });
  const points = Number(await page.getAttribute(chart, "data-points"));
  const utilization = await page.textContent(tid(`util-${resource}-requests`));
  const inFlight = await page.textContent(tid(`inflight-${resource}`));
  const limits = await page.textContent(tid(`limits-${resource}`));
  // Buffers are an admin's to read: without a key the page lists none.
  if (process.env.EXPECT_BUFFER && await page.isVisible(tid("buffers"))) {
    throw new Error("buffers are listed before a key is given");
  }

  // Without a key the coordinator refuses the pause, and the page says so.
  await page.click(tid(`pause-${resource}`));
  await page.waitForSelector(`${tid("error")}:not([hidden])`, { timeout: 10000 });
  const refused = await page.textContent(tid("error"));
  if (!refused.includes("401")) throw new Error(`a pause without a key should be refused with 401, the page said: ${refused}`);
  if (await page.isVisible(tid(`paused-${resource}`))) throw new Error("paused although the pause was refused");

  await page.fill(tid("api-key"), adminKey);
  await page.click(tid("api-key-save"));
  await page.click(tid(`pause-${resource}`));
  await page.waitForSelector(`${tid(`paused-${resource}`)}:not([hidden])`, { timeout: 10000 });
  const badge = await page.textContent(tid(`paused-${resource}`));
  // EXPECT_BUFFER=name:pending: with the admin key the buffers table shows that buffer with that many pending.
  let buffer = null;
  if (process.env.EXPECT_BUFFER) {
    const [name, pending] = process.env.EXPECT_BUFFER.split(":");
    await page.waitForFunction(([s, n]) => document.querySelector(s)?.textContent === n,
      [tid(`buffer-pending-${name}`), pending], { timeout: 15000 });
    buffer = await page.textContent(tid(`buffer-${name}`));
  }
  await page.screenshot({ path: screenshot, fullPage: true });
  const keyInUrl = page.url().includes(adminKey);
  if (keyInUrl) throw new Error("the admin key ended up in the URL");
  if (consoleErrors.length) throw new Error(`errors in the page's console: ${consoleErrors.join(" | ")}`);

  console.log(JSON.stringify({ first, second, points, utilization, inFlight, limits, refused, badge, buffer }));
} catch (e) {
  console.error(`dashboard check failed: ${e.message}`);
  process.exitCode = 1;
} finally {
  if (browser) await browser.close();
}
