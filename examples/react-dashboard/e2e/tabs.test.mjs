// The React example in three tabs of one browser (issue 15): the provider shares one
// connection between them, so the server sees one connection; every tab shows the chat
// and "shared with 3 tabs"; a message typed in any tab shows once in every tab, also
// after the tab holding the connection is closed.
//
// Needs the built app and the reference server, as dashboard.test.mjs.
//   node --test examples/react-dashboard/e2e/
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';

import { chromium } from 'playwright-core';

import { startReferenceServer } from '../../reference-server.mjs';
import { distDir, serveApp } from '../serve.mjs';
import { chromiumOptions } from '../../../scripts/chromium.mjs';

const badge = (state) => `[data-testid=connection-status][data-state=${state}]`;

let server;
let app;
let browser;
let context;
const pageErrors = [];

before(async () => {
  assert.ok(existsSync(join(distDir, 'index.html')), `${distDir} is not built`);
  server = await startReferenceServer();
  app = await serveApp({ config: { server: server.http } });
  browser = await chromium.launch({
    ...chromiumOptions,
  });
  context = await browser.newContext();
});

after(async () => {
  await context?.close();
  await browser?.close();
  await app?.close();
  await server?.stop();
  assert.deepEqual(pageErrors, [], 'errors in the pages');
});

async function openTab() {
  const page = await context.newPage();
  page.on('pageerror', (e) => pageErrors.push(e));
  await page.goto(`${app.url}?room=tabs`);
  await page.waitForSelector(badge('connected'), { timeout: 15_000 });
  return page;
}

const active = async () => (await (await fetch(`${server.http}/api/websocket/metrics`)).json()).active_connections;

async function say(page, text) {
  await page.getByTestId('chat-input').fill(text);
  await page.getByTestId('chat-input').press('Enter');
}

/** Waits until `text` shows in the room of every page, then checks it shows once. */
async function shownOnce(pages, text) {
  for (const page of pages) {
    await page.getByTestId('chat-text').filter({ hasText: text }).first().waitFor({ timeout: 15_000 });
  }
  for (const page of pages) {
    const shown = await page.getByTestId('chat-text').allInnerTexts();
    assert.equal(shown.filter((s) => s === text).length, 1, `"${text}" once in every tab`);
  }
}

test('three tabs of the React example: one connection at the server, every message in every tab', async () => {
  const pages = [await openTab(), await openTab(), await openTab()];
  for (const page of pages) {
    await page.getByTestId('connection-tabs').filter({ hasText: 'shared with 3 tabs' }).waitFor({ timeout: 10_000 });
  }
  assert.equal(await active(), 1, 'one connection for the three tabs');
  for (const [i, page] of pages.entries()) {
    await say(page, `hello from tab ${i}`);
  }
  for (const i of [0, 1, 2]) await shownOnce(pages, `hello from tab ${i}`);

  // The tab that opened first holds the connection: close it; the others carry on.
  await pages[0].close();
  const rest = pages.slice(1);
  await say(rest[0], 'after the first tab closed');
  await shownOnce(rest, 'after the first tab closed');
  assert.equal(await active(), 1, 'still one connection');
});
