// Drives JupyterLab (already served by tests/test_browser.py) in Debian's chromium with
// playwright-core: opens the quickstart notebook, reads how the %%rust_async cell is
// highlighted, runs all cells, edits the Rust cell and reruns it. It waits for each step
// and reports what the page showed as one JSON object on stdout; the Python test asserts.
//
// Usage: node quickstart.mjs '<json config>' (see CONFIG below).

import { chromium } from 'playwright-core';

/** url, token, notebook, chromium, screenshotDir, nonce, runAllOnly (only Run All, for notebooks other than the quickstart) */
const CONFIG = JSON.parse(process.argv[2]);
const FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync'
];

// A build normally takes a second or two; this much allows for waiting on the cache's build
// lock while another process builds there (a shared test cache on a busy machine).
const BUILD_WAIT = 120_000;

const report = { steps: [], console: [], screenshots: [] };
const started = Date.now();
const step = name => report.steps.push({ name, at: (Date.now() - started) / 1000 });

// --- in the page -------------------------------------------------------------------------

/** The open notebook panel's code cells: first source line, prompt, output text. */
function codeCells() {
  const nb = window.jupyterapp.shell.currentWidget;
  return nb.content.widgets
    .filter(cell => cell.model.type === 'code')
    .map(cell => ({
      source: cell.model.sharedModel.getSource(),
      prompt: cell.node.querySelector('.jp-InputArea-prompt')?.textContent ?? '',
      executionCount: cell.model.executionCount,
      output: cell.node.querySelector('.jp-Cell-outputArea')?.innerText ?? ''
    }));
}

/**
 * How a word is drawn in a cell's editor: the element holding its text node (CodeMirror
 * wraps each highlighted token in its own span) and that element's computed style.
 */
function tokenStyles(args) {
  const [cellIndex, words] = args;
  const nb = window.jupyterapp.shell.currentWidget;
  const cell = nb.content.widgets[cellIndex];
  const content = cell.node.querySelector('.cm-content');
  const found = {};
  for (const word of words) {
    const walker = document.createTreeWalker(content, NodeFilter.SHOW_TEXT);
    const pattern = new RegExp(`(^|[^A-Za-z0-9_])${word}([^A-Za-z0-9_]|$)`);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      if (pattern.test(node.textContent)) {
        const el = node.parentElement;
        const style = getComputedStyle(el);
        found[word] = {
          text: node.textContent,
          className: el.className,
          color: style.color,
          fontWeight: style.fontWeight
        };
        break;
      }
    }
  }
  return {
    found,
    plain: getComputedStyle(content).color,
    marker: cell.editor.host.querySelector('.cm-editor')?.getAttribute('data-ipy-rustasync') ?? null
  };
}

// --- the run -----------------------------------------------------------------------------

async function shot(page, name) {
  const path = `${CONFIG.screenshotDir}/${name}.png`;
  await page.screenshot({ path });
  report.screenshots.push(path);
}

async function main(page) {
  page.on('console', msg => {
    if (msg.type() === 'error' || msg.type() === 'warning') {
      report.console.push(`${msg.type()}: ${msg.text()}`);
    }
  });
  page.on('pageerror', err => report.console.push(`pageerror: ${err.message}`));

  await page.goto(`${CONFIG.url}/lab/tree/${CONFIG.notebook}?token=${CONFIG.token}`);
  await page.waitForFunction(
    () => {
      const nb = window.jupyterapp?.shell.currentWidget;
      return (
        nb?.content?.widgets?.length > 0 &&
        nb.sessionContext?.session?.kernel?.connectionStatus === 'connected' &&
        nb.sessionContext.kernelDisplayStatus === 'idle' &&
        document.querySelectorAll('.jp-CodeCell .cm-content').length > 0
      );
    },
    null,
    { timeout: 60_000, polling: 200 }
  );
  step('notebook open, kernel idle');
  report.plugin = await page.evaluate(() => ({
    registered: window.jupyterapp.hasPlugin('ipy-rustasync:rust-cells'),
    activated: window.jupyterapp.isPluginActivated('ipy-rustasync:rust-cells')
  }));

  if (CONFIG.runAllOnly) {
    // Another notebook (the live demo): Run All and read what every cell shows.
    await runAll(page);
    return;
  }

  const cellIndex = prefix =>
    page.evaluate(
      prefix =>
        window.jupyterapp.shell.currentWidget.content.widgets.findIndex(cell =>
          cell.model.sharedModel.getSource().startsWith(prefix)
        ),
      prefix
    );
  const rustIndex = await cellIndex('%%rust_async');
  const pythonIndex = await cellIndex('import asyncio');
  const callIndex = await cellIndex('add(2, 3)');
  // CodeMirror finishes parsing in the background (the Rust part is a nested parse that
  // can land a second after the editor appears): wait until `fn` is a token of its own,
  // which it never is when the cell is parsed as Python. On timeout, report what is there.
  report.parsedIn = await page
    .waitForFunction(
      index => {
        const cell = window.jupyterapp.shell.currentWidget.content.widgets[index];
        return [...cell.node.querySelectorAll('.cm-line span')].some(s => s.textContent === 'fn');
      },
      rustIndex,
      { timeout: 15_000, polling: 100 }
    )
    .then(() => (Date.now() - started) / 1000)
    .catch(() => null);
  report.highlight = {
    rust: await page.evaluate(tokenStyles, [rustIndex, ['pub', 'fn']]),
    python: await page.evaluate(tokenStyles, [pythonIndex, ['import', 'await', 'for']]),
    pythonCall: await page.evaluate(tokenStyles, [callIndex, ['add']])
  };
  step('highlighting read');
  await shot(page, 'opened');

  await runAll(page);

  // Edit the Rust cell in its editor: a new last line with a comment that is new to the
  // cache, then Ctrl+Enter, which reruns it in place.
  const rustCell = page.locator('.jp-Notebook .jp-Cell').nth(rustIndex);
  const countBefore = report.afterRunAll.find(cell => cell.source.startsWith('%%rust_async'))?.executionCount ?? 0;
  await rustCell.locator('.cm-content').click();
  await page.keyboard.press('Control+End');
  await page.keyboard.press('End');
  await page.keyboard.press('Enter');
  await page.keyboard.type(`// browser test ${CONFIG.nonce}`);
  // Record every build status the page shows while the cell rebuilds (the progress
  // display lives only as long as cargo runs, then becomes the summary line).
  await page.evaluate(() => {
    window.__statuses = [];
    const seen = new MutationObserver(() => {
      for (const node of document.querySelectorAll('.jp-OutputArea-output')) {
        const text = (node.innerText ?? '').trim();
        if (text.startsWith('rust_async: compiling') && !window.__statuses.includes(text)) {
          window.__statuses.push(text);
        }
      }
    });
    seen.observe(document.body, { subtree: true, childList: true, characterData: true });
  });
  await page.keyboard.press('Control+Enter');
  report.rerun = await page
    .waitForFunction(
      ([previous, nonce]) => {
        const nb = window.jupyterapp.shell.currentWidget;
        const cell = nb.content.widgets.find(c => c.model.sharedModel.getSource().includes(nonce));
        const output = cell?.node.querySelector('.jp-Cell-outputArea')?.innerText ?? '';
        return (cell?.model.executionCount ?? 0) > previous && /^rust_async:.*(built in|cached)|Error/m.test(output)
          ? { executionCount: cell.model.executionCount, output, source: cell.model.sharedModel.getSource() }
          : false;
      },
      [countBefore, CONFIG.nonce],
      { timeout: BUILD_WAIT, polling: 200 }
    )
    .then(handle => handle.jsonValue())
    .catch(err => ({ error: String(err), cells: null }));
  if (report.rerun.error) {
    report.rerun.cells = await page.evaluate(codeCells);
  }
  report.highlightAfterEdit = await page.evaluate(tokenStyles, [rustIndex, ['pub', 'fn']]);
  report.statuses = await page.evaluate(() => window.__statuses);
  step('edited cell rerun');
  await shot(page, 'rebuilt');

  // Break it: a type error on a new last line; the error must name that line of the cell.
  await rustCell.locator('.cm-content').click();
  await page.keyboard.press('Control+End');
  await page.keyboard.press('End');
  await page.keyboard.press('Enter');
  await page.keyboard.type(`pub fn broken_${CONFIG.nonce}() -> u8 { "text" }`);
  await page.keyboard.press('Control+Enter');
  report.broken = await page
    .waitForFunction(
      nonce => {
        const nb = window.jupyterapp.shell.currentWidget;
        const cell = nb.content.widgets.find(c => c.model.sharedModel.getSource().includes(`broken_${nonce}`));
        const output = cell?.node.querySelector('.jp-Cell-outputArea')?.innerText ?? '';
        return /RustCompileError/.test(output) ? { output, source: cell.model.sharedModel.getSource() } : false;
      },
      CONFIG.nonce,
      { timeout: BUILD_WAIT, polling: 200 }
    )
    .then(handle => handle.jsonValue())
    .catch(err => ({ error: String(err) }));
  step('broken cell run');
  await shot(page, 'broken');
  if (!report.broken.error) {
    report.broken.statusBar = await cursorOnMarkedSource(page, rustIndex, report.broken.output);
    step('cursor on the marked source');
    await shot(page, 'cursor');
  }
}

/** Run All, as the Run menu does (the command's promise settles when the last cell
 * ends), then what every code cell shows. */
async function runAll(page) {
  // Run All, as the Run menu does; the command's promise settles when the last cell ends.
  report.runAll = await page.evaluate(
    timeout =>
      Promise.race([
        window.jupyterapp.commands.execute('notebook:run-all-cells'),
        new Promise(resolve => setTimeout(() => resolve('timeout'), timeout))
      ]),
    BUILD_WAIT
  );
  report.afterRunAll = await page.evaluate(codeCells);
  step('all cells run');
  await shot(page, CONFIG.notebook.replace('.ipynb', ''));
}

/**
 * Clicks into the source the error marks (the string literal of the broken line, where
 * rustc's `^` points) and returns what JupyterLab's status bar then says of the cursor
 * ("Ln 15, Col 50"), waiting until it shows a column inside that literal.
 */
async function cursorOnMarkedSource(page, cellIndex, output) {
  const named = /--> cell line (\d+), column (\d+)/.exec(output);
  const point = await page.evaluate(
    ([index, nonce]) => {
      const cell = window.jupyterapp.shell.currentWidget.content.widgets[index];
      const line = [...cell.node.querySelectorAll('.cm-line')].find(l => l.textContent.includes(`broken_${nonce}`));
      if (!line) return null;
      line.scrollIntoView({ block: 'center' });
      const walker = document.createTreeWalker(line, NodeFilter.SHOW_TEXT);
      for (let node = walker.nextNode(); node; node = walker.nextNode()) {
        const at = node.textContent.indexOf('"text"');
        if (at >= 0) {
          const range = document.createRange();
          range.setStart(node, at + 2); // the `e` of "text": well inside the literal
          range.setEnd(node, at + 3);
          const box = range.getBoundingClientRect();
          return { x: box.left + box.width / 2, y: box.top + box.height / 2 };
        }
      }
      return null;
    },
    [cellIndex, CONFIG.nonce]
  );
  if (!point || !named) return { error: `nothing to click (point ${JSON.stringify(point)}, named ${named})` };
  await page.mouse.click(point.x, point.y);
  const column = Number(named[2]);
  const read = () => /Ln (\d+), Col (\d+)/.exec(document.querySelector('#jp-main-statusbar')?.innerText ?? '')?.[0];
  const shown = await page
    .waitForFunction(
      ([low, high]) => {
        const m = /Ln (\d+), Col (\d+)/.exec(document.querySelector('#jp-main-statusbar')?.innerText ?? '');
        return m && Number(m[2]) > low && Number(m[2]) < high ? m[0] : false;
      },
      [column, column + '"text"'.length],
      { timeout: 10_000, polling: 100 }
    )
    .then(handle => handle.jsonValue())
    .catch(() => null);
  return { text: shown ?? (await page.evaluate(read)) ?? null, clicked: point };
}

const browser = await chromium.launch({
  executablePath: CONFIG.chromium,
  headless: true,
  args: FLAGS,
  timeout: 60_000
});
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 2000 } });
  page.setDefaultTimeout(60_000);
  try {
    await main(page);
  } catch (err) {
    report.error = String(err?.stack ?? err);
    await shot(page, 'failure').catch(() => {});
  }
} finally {
  await browser.close();
}
report.seconds = (Date.now() - started) / 1000;
process.stdout.write(JSON.stringify(report) + '\n');
