// Drives Debian's Firefox ESR for the Python browser tests (tests/browser/engines.py).
//
// puppeteer-core (pinned in package.json; it downloads no browser) speaks WebDriver BiDi to
// /usr/bin/firefox-esr. The Python side sends one JSON command per line on stdin and reads
// one JSON answer per line on stdout: {"ok": value} or {"error": message}. Firefox runs
// headless in a permanent private window (as Tor Browser does), with JavaScript on or off
// (the javascript.enabled pref, as Tor Browser's "Safest" level sets it).
import puppeteer from 'puppeteer-core';
import readline from 'node:readline';

const [executablePath, javascript, profileDir] = process.argv.slice(2);

const browser = await puppeteer.launch({
  browser: 'firefox',
  executablePath,
  headless: true,
  userDataDir: profileDir,
  extraPrefsFirefox: {
    'browser.privatebrowsing.autostart': true,
    'javascript.enabled': javascript === 'on',
    // puppeteer asks Firefox to keep every request and response body (up to 200 MB by
    // default) for a getData these tests never call: an upload's pieces, kept in the parent
    // process, were most of its growth in bench/browser_encrypt.py. With no room, Firefox
    // refuses the collectors and puppeteer carries on without them.
    'remote.network.maxTotalDataSize': 0,
  },
});
const page = (await browser.pages())[0] || await browser.newPage();
await page.setViewport({ width: 900, height: 2000 });
const requests = [];
const errors = [];
page.on('request', (request) => {
  requests.push({ url: request.url(), method: request.method() });
});
const failed = [];
page.on('requestfailed', (request) => {
  failed.push({ url: request.url(), method: request.method() });
});
page.on('console', (message) => {
  if (message.type() === 'error') {
    errors.push(message.text());
  }
});
page.on('pageerror', (error) => errors.push(String(error)));

function timeout(ms) {
  return { timeout: ms === undefined ? 30000 : ms };
}

// puppeteer's own waitForSelector polls with a script in the page, which a page with
// JavaScript off never runs; asking for the element every 50 ms works in both modes.
async function waitForElement(selector, ms, visible) {
  const deadline = Date.now() + timeout(ms).timeout;
  for (;;) {
    // A page that is navigating away cannot be asked; ask the next one.
    const element = await page.$(selector).catch(() => null);
    if (element !== null && (!visible || await element.isVisible().catch(() => false))) {
      return element;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${selector}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

// resourceType() is not offered over BiDi, so requests carry their URL and method only.
// element.click() and the ::-p-text() selectors break in a page with JavaScript off (the
// browser closes the target), so a click is the mouse's, at the element's centre, once
// the element is scrolled into the viewport (WebDriver refuses a move outside it; the
// submission page is taller than the window since it gained its advice panel).
//
// A click at a point lands on whatever is there when it arrives: if the page moved the
// element after its box was read, it would miss without a word. So, as Playwright does
// before it clicks, the point is checked to be the element's (it or a child is on top
// there) and the box to have stayed put over a short wait; if not, both are read again.
async function clickOn(element, ms) {
  const deadline = Date.now() + timeout(ms).timeout;
  for (;;) {
    await element.evaluate((el) => { el.scrollIntoView({ block: 'center' }); });
    const box = await element.boundingBox();
    if (box === null) {
      throw new Error('the element is not laid out');
    }
    const x = box.x + box.width / 2;
    const y = box.y + box.height / 2;
    await new Promise((resolve) => setTimeout(resolve, 50));
    const again = await element.boundingBox();
    const onTop = await element.evaluate((el, px, py) => {
      const hit = document.elementFromPoint(px, py);
      return hit !== null && el.contains(hit);
    }, x, y);
    if (again !== null && again.x === box.x && again.y === box.y && onTop) {
      await page.mouse.click(x, y);
      return;
    }
    if (Date.now() > deadline) {
      throw new Error('the element did not stay in one place, uncovered, long enough to click');
    }
  }
}

// Each command is a small, named use of puppeteer's API; nothing here evaluates strings
// the tests did not write themselves.
const commands = {
  goto: async ({ url }) => {
    const before = requests.length;
    try {
      await page.goto(url, { waitUntil: 'load' });
    } catch (error) {
      // After Firefox showed its own error page (a form's POST cut off by the tests'
      // shaping proxy, which Firefox had also retried once), puppeteer can miss the load
      // event of the next navigation although the page arrived whole. Seen: the GET in
      // the request log, the page's URL right and its document complete, yet goto timed
      // out, three times in a row. Accept exactly that, and nothing less: a new GET of
      // this URL, and a complete document that is this URL, not an error page for it.
      const asked = requests.slice(before).some((r) => r.method === 'GET' && r.url === url);
      const shown = await page.evaluate(() => [document.documentURI, document.readyState])
        .catch(() => [null, null]);
      if (!asked || shown[0] !== url || shown[1] !== 'complete') {
        throw error;
      }
      process.stderr.write(`goto ${url}: loaded, but puppeteer missed its load event\n`);
    }
  },
  url: async () => page.url(),
  click: async ({ selector, ms }) => {
    await clickOn(await waitForElement(selector, ms, true), ms);
  },
  clickAndLoad: async ({ selector, ms }) => {
    const element = await waitForElement(selector, ms, true);
    await Promise.all([page.waitForNavigation({ waitUntil: 'load', ...timeout(ms) }),
                       clickOn(element, ms)]);
  },
  fill: async ({ selector, value }) => {
    const element = await waitForElement(selector, undefined, false);
    await element.evaluate((el) => { el.value = ''; });
    await element.type(value, { delay: 0 });
  },
  setFiles: async ({ selector, paths }) => {
    const element = await waitForElement(selector, undefined, false);
    await element.uploadFile(...paths);
  },
  waitFor: async ({ selector, ms }) => {
    await waitForElement(selector, ms, true);
  },
  waitForText: async ({ text, ms }) => {
    const deadline = Date.now() + timeout(ms).timeout;
    const shown = () => page.$eval('body', (el) => el.innerText).catch(() => '');
    while (!(await shown()).includes(text)) {
      if (Date.now() > deadline) {
        throw new Error(`timed out waiting for the text ${JSON.stringify(text)}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  },
  waitForFunction: async ({ source, ms }) => {
    await page.waitForFunction(source, { polling: 50, ...timeout(ms) });
  },
  innerText: async ({ selector }) => page.$eval(selector, (el) => el.innerText),
  isVisible: async ({ selector }) => {
    const element = await page.$(selector);
    return element !== null && await element.isVisible();
  },
  content: async () => page.content(),
  evaluate: async ({ source }) => page.evaluate(source),
  screenshot: async ({ path }) => { await page.screenshot({ path, fullPage: true }); },
  requests: async () => requests,
  failedRequests: async () => failed,
  errors: async () => errors,
  close: async () => { await browser.close(); process.exit(0); },
};

// A failure inside puppeteer that no command awaits (it happens on the browser's own error
// pages) is logged, not fatal: the test asks what it needs and gets an answer.
process.on('unhandledRejection', (error) => process.stderr.write(`${error}\n`));

const lines = readline.createInterface({ input: process.stdin });
for await (const line of lines) {
  const command = JSON.parse(line);
  let answer;
  try {
    answer = { ok: await commands[command.name](command) ?? null };
  } catch (error) {
    answer = { error: String(error && error.message || error) };
  }
  process.stdout.write(JSON.stringify(answer) + '\n');
}
await browser.close();
