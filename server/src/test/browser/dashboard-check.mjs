// Drives the Sluice dashboard in Debian's headless Chromium through Playwright (playwright-core,
// no browser download). Run by DashboardBrowserIT against a real coordinator under load:
//
//   node dashboard-check.mjs URL RESOURCE ADMIN_KEY SCREENSHOT_PATH
//
// Checks that the page goes live, that the resource's rates and totals move and its chart fills
// with a percentage scale and time ticks, that each bucket's level shows, that only the action
// that applies is offered, that sort and filter appear with more than 10 resources, that a pause
// without a key is refused on the page, then pauses the resource with the admin key and waits for
// the paused badge naming the admin. With THROTTLED=name, that resource was paused by an upstream
// 429 report: its badge must say so with the time left, and its reports must show with their
// time. With TENANTS=name, that resource is shared between tenants: its tenant panel must show,
// and each row's share, fair share, weight, floor, cap and waiters are reported. With POOL=name,
// the pools table must list that pool: each member's state and pool grants are reported. Prints one JSON
// line of what it saw; exits 1 with a message on any failure. CHROMIUM
// overrides the browser path (default /usr/bin/chromium).
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
  await page.waitForFunction((s) => /^[\d.,]+\/s$/.test(document.querySelector(s)?.textContent ?? "")
      && parseFloat(document.querySelector(s).textContent) > 0, tid(`grants-rate-${resource}`), { timeout: 10000 });
  const rate = await page.textContent(tid(`grants-rate-${resource}`));
  const refusals = await page.textContent(tid(`refusals-rate-${resource}`));
  const scale = await page.$$eval(`${tid(`scale-${resource}-requests`)} span`, (spans) => spans.map((x) => x.textContent));
  const axis = await page.$$eval(`${tid(`time-axis-${resource}`)} span`, (spans) => spans.map((x) => x.textContent));
  await page.waitForFunction((s) => /^bucket -?\d+ %$/.test(document.querySelector(s)?.textContent ?? ""),
    tid(`level-${resource}-tokens`), { timeout: 10000 });
  const level = await page.textContent(tid(`level-${resource}-tokens`));
  const resumeShownUnpaused = await page.isVisible(tid(`resume-${resource}`));
  const pauseShownUnpaused = await page.isVisible(tid(`pause-${resource}`));
  let throttled = null;
  if (process.env.THROTTLED) {
    const name = process.env.THROTTLED;
    await page.waitForSelector(`${tid(`throttles-${name}`)}:not([hidden])`, { timeout: 10000 });
    throttled = {
      badge: await page.textContent(tid(`paused-${name}`)),
      reports: await page.textContent(tid(`throttles-${name}`)),
      pauseShown: await page.isVisible(tid(`pause-${name}`)),
      resumeShown: await page.isVisible(tid(`resume-${name}`)),
    };
  }
  let tenants = null;
  if (process.env.TENANTS) {
    const name = process.env.TENANTS;
    await page.waitForSelector(`${tid(`tenants-${name}`)}:not([hidden])`, { timeout: 10000 });
    // A row per tenant once a sample measured a share (before any use they read "–").
    await page.waitForFunction((s) => document.querySelector(s)?.textContent.includes("share of"),
      tid(`tenants-title-${name}`), { timeout: 10000 });
    tenants = {
      title: await page.textContent(tid(`tenants-title-${name}`)),
      rows: await page.$$eval(`${tid(`tenants-${name}`)} tr[data-testid]`, (rows) => Object.fromEntries(rows.map((r) => {
        const cell = (what) => r.querySelector(`[data-testid^="tenant-${what}-"]`)?.textContent;
        return [r.querySelector("td.name").textContent, { share: cell("share"), fair: cell("fair"),
          weight: cell("weight"), floor: cell("floor"), cap: cell("cap"), waiting: cell("waiting") }];
      }))),
    };
  }
  let pool = null;
  if (process.env.POOL) {
    const name = process.env.POOL;
    await page.waitForSelector(`${tid("pools")}:not([hidden]) ${tid(`pool-${name}`)}`, { timeout: 10000 });
    pool = await page.$$eval(`${tid("pools")} tr[data-testid^="pool-member-${name}-"]`, (rows) =>
      Object.fromEntries(rows.map((r) => [r.cells[1].textContent, {
        state: r.querySelector('[data-testid^="pool-state-"]').textContent,
        poolGrants: r.querySelector('[data-testid^="pool-granted-"]').textContent,
        pausedRow: r.classList.contains("paused"),
      }])));
  }
  // More than 10 resources: the toolbar sorts and filters.
  const toolbar = await page.isVisible(tid("toolbar"));
  let filtered = null;
  let firstByUtilization = null;
  if (toolbar) {
    await page.fill(tid("filter"), "idle");
    filtered = {
      resourceShown: await page.isVisible(tid(`resource-${resource}`)),
      idleShown: await page.$$eval('[data-testid^="resource-idle"]', (cards) => cards.filter((c) => !c.hidden).length),
      shown: await page.textContent(tid("shown")),
    };
    await page.fill(tid("filter"), "");
    await page.selectOption(tid("sort"), "utilization");
    await page.waitForTimeout(1500); // a sample or two, sorted
    firstByUtilization = await page.$$eval("section.card", (cards) =>
      cards.filter((c) => c.style.order === "0").map((c) => c.dataset.resource)[0]);
  }
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
  await page.waitForFunction((s) => document.querySelector(s)?.hidden === true, tid(`pause-${resource}`),
    { timeout: 10000 });
  const pauseShownPaused = await page.isVisible(tid(`pause-${resource}`));
  const resumeShownPaused = await page.isVisible(tid(`resume-${resource}`));
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

  console.log(JSON.stringify({ first, second, points, utilization, inFlight, limits, refused, badge, buffer, rate,
    refusals, scale, axis, level, throttled, tenants, pool, toolbar, filtered, firstByUtilization,
    actions: { pauseShownUnpaused, resumeShownUnpaused, pauseShownPaused, resumeShownPaused } }));
} catch (e) {
  console.error(`dashboard check failed: ${e.message}`);
  process.exitCode = 1;
} finally {
  if (browser) await browser.close();
}
