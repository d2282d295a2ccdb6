// One connection for every tab (issue 15), in a real browser: three pages of one origin
// in one Chromium context share one SharedTetherClient connection to the reference
// server's echo (`/ws`: each message comes back as a server message). Every tab sends;
// every tab must receive every echo exactly once, also while the leader tab is closed
// and another takes the session over, again and again; the server never sees more than
// one connection at a time.
//
// Needs the built package (node bindings/js/scripts/build.mjs) and the reference server
// (cargo build -p tether-server).
//   node --test bindings/js/e2e/
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { after, afterEach, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

import { serveApp } from '../../../examples/react-dashboard/serve.mjs';
import { startReferenceServer } from '../../../examples/reference-server.mjs';
import { chromiumOptions } from '../../../scripts/chromium.mjs';

const PACKAGE = fileURLToPath(new URL('..', import.meta.url));

let server;
let site;
let browser;
let context;
const pageErrors = [];
/**
 * Sampled at the server while the tests run: the most connections open at once, and the
 * most client ids (sessions) among them. In a handoff the old leader's socket may still be
 * closing at the server while the next leader's opens (both of the one session: the newer
 * attaches it and the server drops the older), so two sockets can be seen for a moment;
 * two sessions never.
 */
let peak = 0;
let peakSessions = 0;
let sampling;

before(async () => {
  assert.ok(existsSync(join(PACKAGE, 'dist', 'index.js')), 'the package is not built');
  server = await startReferenceServer();
  site = await serveApp({ config: {}, dir: PACKAGE });
  browser = await chromium.launch({
    ...chromiumOptions,
  });
  context = await browser.newContext();
  sampling = setInterval(async () => {
    try {
      const res = await fetch(`${server.http}/api/websocket/metrics`, {
        headers: { authorization: `Bearer ${server.adminToken}` },
      });
      const { active_connections: active, connections } = await res.json();
      peak = Math.max(peak, active);
      const sessions = new Set(connections.map((c) => c.client_id).filter((id) => id !== null));
      peakSessions = Math.max(peakSessions, sessions.size);
    } catch {
      // The server is stopping.
    }
  }, 25);
});

after(async () => {
  clearInterval(sampling);
  await context?.close();
  await browser?.close();
  await site?.close();
  await server?.stop();
  assert.deepEqual(pageErrors, [], 'errors in the pages');
});

/**
 * Every page a test opened and did not close. A test that fails leaves its pages open (it
 * never reaches its own close): a leader among them would keep a connection at the server
 * and fail the next test's count of connections, so they are closed after each test.
 */
const openPages = new Set();
afterEach(async () => {
  await Promise.all([...openPages].map((page) => page.close()));
});

async function openTab(options = {}, init = undefined) {
  const page = await context.newPage();
  openPages.add(page);
  page.on('close', () => openPages.delete(page));
  if (init) await page.addInitScript(init);
  page.on('pageerror', (e) => pageErrors.push(e));
  const query = new URLSearchParams({ ws: server.ws, options: JSON.stringify(options) });
  await page.goto(`${site.url}e2e/tabs.html?${query}`);
  await page.waitForFunction(() => window.tabReady === true);
  return page;
}

const isLeader = (page) => page.evaluate(() => window.client.isLeader);
const received = (page) => page.evaluate(() => window.received);

/** The one leader among `pages` (waits for the election, up to `tries` × 25 ms). */
async function leaderOf(pages, tries = 200) {
  for (let i = 0; i < tries; i += 1) {
    const flags = await Promise.all(pages.map(isLeader));
    const leaders = pages.filter((_, j) => flags[j]);
    assert.ok(leaders.length <= 1, 'two leaders');
    if (leaders.length === 1) return leaders[0];
    await pages[0].waitForTimeout(25);
  }
  throw new Error('no leader elected');
}

/** Connections open at the server now. */
const active = async () => (await (await fetch(`${server.http}/api/websocket/metrics`)).json()).active_connections;

/** Waits until the server has one connection left (bounded). */
async function oneConnection(page) {
  for (let i = 0; (await active()) !== 1; i += 1) {
    if (i >= 200) {
      // Say which, for the record.
      const res = await fetch(`${server.http}/api/websocket/metrics`, {
        headers: { authorization: `Bearer ${server.adminToken}` },
      });
      const { connections } = await res.json();
      assert.fail(`the server kept ${connections.length} connections: ${JSON.stringify(connections)}`);
    }
    await page.waitForTimeout(25);
  }
}

/** At most one session at the server so far, and two sockets only during a handoff. */
function oneSession() {
  assert.equal(peakSessions, 1, `the server had ${peakSessions} sessions at once`);
  assert.ok(peak <= 2, `the server had ${peak} connections at once`);
}

/** Waits until every page of `pages` received every text of `texts`. */
async function allReceive(pages, texts) {
  try {
    await Promise.all(
      pages.map((page) =>
        page.waitForFunction((want) => want.every((t) => window.received.includes(t)), texts, { timeout: 20_000 }),
      ),
    );
  } catch (e) {
    // Say what is missing where, for the record.
    const report = [];
    for (const page of pages) {
      const got = await received(page);
      const leads = await isLeader(page);
      report.push(`${leads ? 'leader' : 'follower'}: missing ${texts.filter((t) => !got.includes(t)).join(',')}`);
    }
    throw new Error(`${e.message}\n${report.join('\n')}`);
  }
}

/** Asserts no page received a text twice. */
async function noDuplicates(pages) {
  for (const page of pages) {
    const got = await received(page);
    const twice = got.filter((t, i) => got.indexOf(t) !== i);
    assert.deepEqual(twice, [], 'a message received twice');
  }
}

let counter = 0;
/** Each page sends `n` texts of its own; returns them. */
async function sendFrom(pages, n) {
  const all = [];
  await Promise.all(
    pages.map(async (page) => {
      const texts = Array.from({ length: n }, () => `m${(counter += 1)}`);
      all.push(...texts);
      await page.evaluate((ts) => ts.forEach((t) => window.client.send(t)), texts);
    }),
  );
  return all;
}

test('three tabs share one connection: every tab gets every message once', async () => {
  const pages = [await openTab(), await openTab(), await openTab()];
  await leaderOf(pages);
  const texts = await sendFrom(pages, 20);
  await allReceive(pages, texts);
  await noDuplicates(pages);
  assert.equal(peak, 1, 'one connection at the server');
  assert.equal(peakSessions, 1, 'one session at the server');
  // Every tab, leader or follower, sees the connection's state and figures, and has a
  // send confirmed by the server under the id its own send returned.
  for (const page of pages) {
    const seen = await page.evaluate(async () => {
      const id = await window.client.sendConfirmed('confirmed');
      const m = window.client.metrics();
      return {
        id,
        state: window.client.state,
        tabs: m.sharedTabs,
        out: m.messagesOut,
        clientId: window.client.clientId,
      };
    });
    assert.equal(seen.state, 'connected');
    assert.equal(seen.clientId, await pages[0].evaluate(() => window.client.clientId), 'one client id');
    assert.match(seen.clientId, /^[0-9a-f]+$/);
    assert.equal(seen.id, 21, 'the id its own send returned');
    assert.equal(seen.tabs, 3, 'shared with 3 tabs');
    assert.ok(seen.out >= 60, `the leader's figures: ${seen.out} messages out`);
  }
  await Promise.all(pages.map((p) => p.close()));
});

test('the leader tab closed while every tab sends, again and again: nothing lost or duplicated', async () => {
  /** Every text sent, in order; each page must receive every one sent after it opened. */
  const sent = [];
  const since = new Map();
  const open = async () => {
    const page = await openTab();
    since.set(page, sent.length);
    return page;
  };
  let pages = [await open(), await open(), await open()];
  for (let round = 0; round < 5; round += 1) {
    const leader = await leaderOf(pages);
    // Sent by every tab: the leader's own not yet acknowledged when it goes.
    sent.push(...(await sendFrom(pages, 10)));
    const rest = pages.filter((p) => p !== leader);
    await leader.close();
    // Sent while no tab holds the connection, or while the next one takes it over.
    sent.push(...(await sendFrom(rest, 10)));
    pages = [...rest, await open()];
    await oneConnection(await leaderOf(pages));
    sent.push(...(await sendFrom(pages, 5)));
  }
  for (const page of pages) await allReceive([page], sent.slice(since.get(page)));
  await noDuplicates(pages);
  const resets = await Promise.all(pages.map((p) => p.evaluate(() => window.resets)));
  assert.deepEqual(
    resets,
    pages.map(() => 0),
    'the session was taken over, never started afresh',
  );
  oneSession();
  await Promise.all(pages.map((p) => p.close()));
});

test('every tab reloaded in turn while the others send: nothing lost or duplicated', async () => {
  const sent = [];
  const since = new Map();
  const pages = [await openTab(), await openTab(), await openTab()];
  for (const page of pages) since.set(page, 0);
  for (let round = 0; round < 2; round += 1) {
    for (const page of pages) {
      const others = pages.filter((p) => p !== page);
      sent.push(...(await sendFrom(pages, 5)));
      const reloading = page.reload();
      sent.push(...(await sendFrom(others, 5)));
      await reloading;
      await page.waitForFunction(() => window.tabReady === true);
      since.set(page, sent.length);
      await oneConnection(await leaderOf(pages));
      sent.push(...(await sendFrom(pages, 5)));
    }
  }
  for (const page of pages) await allReceive([page], sent.slice(since.get(page)));
  await noDuplicates(pages);
  oneSession();
  await Promise.all(pages.map((p) => p.close()));
});

test('a frozen leader is taken over, and steps down quietly once thawed: nothing lost or duplicated', async () => {
  const pages = [await openTab(), await openTab(), await openTab()];
  const sent = await sendFrom(pages, 10);
  const old = await leaderOf(pages);
  const rest = pages.filter((p) => p !== old);
  await allReceive(pages, sent);
  // Frozen: headless Chromium never hides a page, and Page.setWebLifecycleState freezes
  // only hidden ones; the debugger stops the page's script the same way (its timers,
  // channel messages and socket events wait until it goes on), the Web Lock stays held.
  const cdp = await context.newCDPSession(old);
  await cdp.send('Debugger.enable');
  await cdp.send('Debugger.pause');
  // Sent while the leader is frozen: nothing takes them until a follower took over.
  sent.push(...(await sendFrom(rest, 10)));
  // A leader silent for 5 s is taken over (the followers beat every second).
  const next = await leaderOf(rest, 600);
  await oneConnection(next);
  sent.push(...(await sendFrom(rest, 10)));
  await allReceive(rest, sent);
  // From now on the server must never see a second connection: the thawed leader neither
  // reconnects nor writes.
  peak = 0;
  await cdp.send('Debugger.resume');
  for (let i = 0; await isLeader(old); i += 1) {
    assert.ok(i < 200, 'the thawed leader did not step down');
    await old.waitForTimeout(25);
  }
  assert.equal(await leaderOf(pages), next, 'the new leader keeps the lead');
  sent.push(...(await sendFrom(pages, 10)));
  await allReceive(pages, sent);
  await noDuplicates(pages);
  const seen = await Promise.all(pages.map((p) => p.evaluate(() => [window.resets, window.stops, window.errors])));
  assert.deepEqual(
    seen,
    pages.map(() => [0, [], []]),
    'no session reset, no stop, no error in any tab',
  );
  assert.equal(peak, 1, 'one connection at the server once the takeover settled');
  oneSession();
  // The old leader follows: its sends go through the new one, which counts three tabs.
  assert.equal(await old.evaluate(() => window.client.sendConfirmed('after')), 21);
  assert.equal(await next.evaluate(() => window.client.tabs), 3);
  await Promise.all(pages.map((p) => p.close()));
});

test("a follower has the leader client's API: refusals come back as its typed errors, sendWait, flush, closeNow; a silent tab stops counting", async () => {
  // Another group (share key): what this test sends is its own.
  const options = { shareKey: 'user-2', queue: { maxMessages: 4 }, maxMessageBytes: 64 };
  const pages = [await openTab(options), await openTab(options)];
  const leader = await leaderOf(pages);
  const follower = pages.find((p) => p !== leader);
  const tried = (page) =>
    page.evaluate(async () => {
      const c = window.client;
      const big = 'x'.repeat(100);
      const confirm = await c.sendConfirmed(big).then(
        () => 'sent',
        (e) => [e.kind, e.cause?.kind],
      );
      const wait = await c.sendWait(big).then(
        () => 'sent',
        (e) => e.kind,
      );
      // Sent at once, more than the queue holds: some refused (thrown in the leader,
      // an `error` event in a follower), then as many paced with sendWait, all delivered.
      const thrown = [];
      for (let i = 0; i < 20; i += 1) {
        try {
          c.send(`burst-${i}`);
        } catch (e) {
          thrown.push(e.kind);
        }
      }
      const paced = await Promise.all(Array.from({ length: 20 }, (_, i) => c.sendWait(`paced-${i}`)));
      await c.flush();
      return { confirm, wait, thrown: [...new Set(thrown)], paced: paced.length, state: c.state };
    });
  const fromLeader = await tried(leader);
  const fromFollower = await tried(follower);
  assert.deepEqual(fromLeader.confirm, ['rejected', 'too-large']);
  assert.deepEqual(fromFollower.confirm, fromLeader.confirm, 'sendConfirmed rejects alike');
  assert.equal(fromLeader.wait, 'too-large');
  assert.equal(fromFollower.wait, fromLeader.wait, 'sendWait rejects alike');
  assert.deepEqual(fromLeader.thrown, ['queue-full']);
  assert.deepEqual(fromFollower.thrown, [], 'a follower cannot throw what the leader refuses');
  assert.deepEqual([...new Set(await follower.evaluate(() => window.errors))], ['queue-full']);
  assert.deepEqual(await leader.evaluate(() => window.errors), []);
  assert.equal(fromFollower.paced, 20);
  await allReceive(
    pages,
    Array.from({ length: 20 }, (_, i) => `paced-${i}`),
  );
  // A tab that stops beating (as one killed without pagehide) stops counting, and counts
  // again once it beats again.
  const third = await openTab(options);
  const count = () => leader.evaluate(() => window.client.tabs);
  const until = async (n) => {
    for (let i = 0; (await count()) !== n; i += 1) {
      assert.ok(i < 400, `the leader counts ${await count()} tabs, not ${n}`);
      await leader.waitForTimeout(25);
    }
  };
  await until(3);
  const cdp = await context.newCDPSession(third);
  await cdp.send('Debugger.enable');
  await cdp.send('Debugger.pause');
  await until(2);
  await cdp.send('Debugger.resume');
  await until(3);
  // closeNow: the follower leaves at once, the leader counts it out.
  await follower.evaluate(() => window.client.closeNow());
  await until(2);
  await Promise.all([...pages, third].map((p) => p.close()));
});

/** The group's BroadcastChannel name, as SharedTetherClient makes it (for hostile code of the origin). */
const channelName = (page, shareKey) =>
  page.evaluate(({ ws, key }) => `tether:${location.origin}|${new URL(ws, location.href).href}|${key}|protocol`, {
    ws: server.ws,
    key: shareKey,
  });

test('malformed posts on the channel (code of the origin) are ignored: no tab throws, steps down or loses a message', async () => {
  const options = { shareKey: 'user-3' };
  const pages = [await openTab(options), await openTab(options), await openTab(options)];
  const leader = await leaderOf(pages);
  const follower = pages.find((p) => p !== leader);
  const errorsBefore = pageErrors.length;
  const name = await channelName(follower, 'user-3');
  // From the follower's page (a channel of its own): learn the leader's epoch, number and
  // tab, then post what no tab would.
  await follower.evaluate(async (name) => {
    const channel = new BroadcastChannel(name);
    const lead = await new Promise((resolve) => {
      channel.onmessage = (e) => e.data?.lead && resolve(e.data);
    });
    const tabs = new Set();
    channel.onmessage = (e) => tabs.add(e.data.from);
    await new Promise((resolve) => setTimeout(resolve, 1500));
    const as = { from: lead.from, e: lead.e, lead: true };
    const posts = [
      null,
      42,
      'hello',
      [],
      {},
      { type: 'beat', from: 'evil', e: String(lead.e + 1), n: 0, lead: false },
      { type: 'hello', from: 'evil', e: null, n: 0, lead: false },
      { type: 'send', from: 'evil', e: lead.e, n: 0, lead: false, id: 'x', data: 'forged' },
      // Numbered as the leader's next post, but no post a leader makes: it must not take that number.
      { ...as, type: 'event', n: lead.n + 1, event: 'no-such-event', value: 1 },
      { ...as, type: 'event', n: lead.n + 1, event: 'state', value: null },
      ...[...tabs].flatMap((to) => [
        { ...as, type: 'replayed', n: lead.n, to, items: 5 },
        { ...as, type: 'replayed', n: lead.n, to, items: [null, 7, { type: 'event' }] },
        { ...as, type: 'outcome', n: lead.n + 1, to, id: 1, event: 'dropped', value: null },
      ]),
      // A session no client can resume: the next leader must still lead.
      {
        ...as,
        type: 'status',
        n: lead.n,
        status: {
          state: 'connected',
          quality: null,
          metrics: {},
          health: { alerts: [], recommendations: [] },
          tabs: 3,
        },
        session: { clientId: 'not a number', recvSeq: 'x', sendSeq: 'y', unacknowledged: 5, unsent: null },
        owners: 'none',
      },
    ];
    for (const post of posts) channel.postMessage(post);
    await new Promise((resolve) => setTimeout(resolve, 500));
    channel.close();
  }, name);
  assert.deepEqual(pageErrors.slice(errorsBefore).map(String), [], 'a tab threw on a malformed post');
  assert.equal(await leaderOf(pages), leader, 'the leader did not step down');
  const ids = await Promise.all(pages.map((p) => p.evaluate(() => window.client.clientId)));
  assert.ok(
    ids.every((id) => id === ids[0] && /^[0-9a-f]+$/.test(id)),
    `one client id in every tab: ${ids}`,
  );
  const sent = await sendFrom(pages, 5);
  await allReceive(pages, sent);
  // The leader goes: the next one resumes the session the real leader broadcast.
  await leader.close();
  const rest = pages.filter((p) => p !== leader);
  await oneConnection(await leaderOf(rest));
  const more = await sendFrom(rest, 5);
  await allReceive(rest, [...sent, ...more]);
  await noDuplicates(rest);
  assert.deepEqual(pageErrors.slice(errorsBefore).map(String), [], 'a tab threw on a malformed post');
  const seen = await Promise.all(rest.map((p) => p.evaluate(() => [window.resets, window.errors])));
  assert.deepEqual(
    seen,
    rest.map(() => [0, []]),
    'no session reset, no error',
  );
  await Promise.all(rest.map((p) => p.close()));
});

/**
 * Two tabs of `shareKey` past their first message: the leader, the follower, and a
 * debugger session on the follower (to stop its script).
 */
async function leaderAndFollower(shareKey) {
  const options = { shareKey };
  const pages = [await openTab(options), await openTab(options)];
  const leader = await leaderOf(pages);
  const follower = pages.find((p) => p !== leader);
  await allReceive(pages, await sendFrom([leader], 1));
  const cdp = await context.newCDPSession(follower);
  await cdp.send('Debugger.enable');
  return { pages, leader, follower, cdp };
}

test('a tab stopped while more posts went out than the leader keeps is not deaf afterwards', async () => {
  const { pages, leader, follower, cdp } = await leaderAndFollower('user-4');
  // A message of its own whose outcome the leader posts while it is stopped.
  await follower.evaluate(() => {
    window.unsure = 'pending';
    window.client.sendConfirmed('unsure').then(
      () => (window.unsure = 'delivered'),
      (e) => (window.unsure = e.kind),
    );
  });
  await cdp.send('Debugger.pause');
  await allReceive([leader], ['unsure']);
  // More than the leader keeps (1024 posts), each message one post.
  const burst = Array.from({ length: 2000 }, (_, i) => `burst-${i}`);
  await leader.evaluate((texts) => Promise.all(texts.map((t) => window.client.sendWait(t))), burst);
  await allReceive([leader], burst);
  await cdp.send('Debugger.resume');
  await cdp.detach();
  const after = await sendFrom(pages, 5);
  await allReceive(pages, after);
  await noDuplicates(pages);
  // It says that it missed some (an `error` of kind `missed`); the leader missed nothing.
  assert.deepEqual(await follower.evaluate(() => [...new Set(window.errors)]), ['missed']);
  assert.deepEqual(await leader.evaluate(() => window.errors), []);
  // Its sendConfirmed settled, it does not hang: as it heard of the gap (unconfirmed: it
  // may have arrived) when its outcome was among what it missed, or with the outcome when
  // the leader got the acknowledgement late enough to keep it.
  assert.ok(['dropped', 'delivered'].includes(await follower.evaluate(() => window.unsure)));
  await Promise.all(pages.map((p) => p.close()));
});

test('what the leader keeps for tabs that missed posts is bounded in bytes too', async () => {
  const { pages, leader, follower, cdp } = await leaderAndFollower('user-5');
  await cdp.send('Debugger.pause');
  // 40 messages of 256 kB: far fewer than 1024 posts, more than 8 MB.
  const big = await leader.evaluate(async () => {
    const texts = Array.from({ length: 40 }, (_, i) => `${i}-`.padEnd(256 * 1024, 'x'));
    await Promise.all(texts.map((t) => window.client.sendWait(t)));
    return texts.length;
  });
  await leader.waitForFunction((n) => window.received.length >= n + 1, big);
  await cdp.send('Debugger.resume');
  await cdp.detach();
  const after = await sendFrom(pages, 5);
  await allReceive(pages, after);
  assert.deepEqual(await follower.evaluate(() => [...new Set(window.errors)]), ['missed']);
  await Promise.all(pages.map((p) => p.close()));
});

test('a tab that closes right after sending: what it sent is delivered, and its promises settle', async () => {
  const options = { shareKey: 'user-6' };
  const pages = [await openTab(options), await openTab(options), await openTab(options)];
  const leader = await leaderOf(pages);
  const [follower, other] = pages.filter((p) => p !== leader);
  await allReceive(pages, await sendFrom(pages, 1));
  /** Sends (one plain, one confirmed) and closes in the same task; how the confirmed one settled. */
  const sendAndClose = (page, tag) =>
    page.evaluate(async (tag) => {
      const c = window.client;
      c.send(`${tag}-plain`);
      const confirmed = c.sendConfirmed(`${tag}-confirmed`);
      void c.close();
      return Promise.race([
        confirmed.then(
          () => 'delivered',
          (e) => `${e.kind}/${e.reason}`,
        ),
        new Promise((resolve) => setTimeout(() => resolve('never settled'), 10_000)),
      ]);
    }, tag);
  const fromFollower = await sendAndClose(follower, 'follower');
  assert.notEqual(fromFollower, 'never settled', 'a closed follower left its sendConfirmed pending');
  const fromLeader = await sendAndClose(leader, 'leader');
  assert.notEqual(fromLeader, 'never settled', 'a closed leader left its sendConfirmed pending');
  // The next leader resumes the session with what the old one wrote last.
  await allReceive([other], ['follower-plain', 'follower-confirmed', 'leader-plain', 'leader-confirmed']);
  await noDuplicates([other]);
  await Promise.all(pages.map((p) => p.close()));
});

test('options no client accepts: the tab says so, as new TetherClient() would, instead of waiting for ever', async () => {
  const errorsBefore = pageErrors.length;
  const page = await openTab({ shareKey: 'user-7', queue: { maxMessages: 'many' } });
  const what = await page.evaluate(async (ws) => {
    const { TetherClient } = await import('/dist/index.js');
    let thrown;
    try {
      new TetherClient(ws, { protocol: true, queue: { maxMessages: 'many' } }).free();
    } catch (e) {
      thrown = e.name;
    }
    const c = window.client;
    const confirmed = await Promise.race([
      c.sendConfirmed('x').then(
        () => 'delivered',
        (e) => e.kind,
      ),
      new Promise((resolve) => setTimeout(() => resolve('never settled'), 5_000)),
    ]);
    return { thrown, confirmed, stops: window.stops, errors: window.errors, state: c.state };
  }, server.ws);
  assert.equal(what.thrown, 'TypeError');
  assert.notEqual(what.confirmed, 'never settled', `the shared client: ${JSON.stringify(what)}`);
  assert.deepEqual([what.state, what.stops, what.errors], ['error', ['fatal'], ['invalid-options']]);
  assert.deepEqual(pageErrors.slice(errorsBefore).map(String), []);
  await page.close();
});

test('a leader that closes while it doubts it still leads (its clock jumped): what it held is not lost', async () => {
  const options = { shareKey: 'user-8' };
  const pages = [await openTab(options), await openTab(options), await openTab(options), await openTab(options)];
  const leader = await leaderOf(pages);
  const [extra, ...rest] = pages.filter((p) => p !== leader);
  await allReceive(pages, await sendFrom(pages, 1));
  const cdp = await context.newCDPSession(leader);
  await cdp.send('Debugger.enable');
  const paused = new Promise((resolve) => cdp.once('Debugger.paused', resolve));
  // Sent, then the leader's script stops (3 s: its clock jumps, no follower takes over yet):
  // the echoes wait, and on the first of them it doubts it leads and holds them.
  const texts = ['held-1', 'held-2', 'held-3', 'held-4', 'held-5'];
  const sending = leader.evaluate((ts) => {
    ts.forEach((t) => window.client.send(t));
    // eslint-disable-next-line no-debugger
    debugger;
  }, texts);
  await paused;
  await leader.waitForTimeout(3000);
  await cdp.send('Debugger.resume');
  await sending;
  await cdp.detach();
  // A tab leaves (the leader posts its status), then the leader closes, while it doubts:
  // the next leader must resume from before what it held.
  await extra.close();
  await leader.evaluate(() => new Promise((resolve) => setTimeout(resolve, 300)).then(() => window.client.close()));
  await leader.close();
  await oneConnection(await leaderOf(rest));
  await allReceive(rest, texts);
  await noDuplicates(rest);
  await Promise.all(rest.map((p) => p.close()));
});

test('a follower that sent to a frozen leader, then to the next before it heard of it: the new leader takes both', async () => {
  const options = { shareKey: 'user-9' };
  const pages = [await openTab(options), await openTab(options), await openTab(options)];
  const old = await leaderOf(pages);
  const [sender, next] = pages.filter((p) => p !== old);
  await allReceive(pages, await sendFrom(pages, 1));
  const oldCdp = await context.newCDPSession(old);
  await oldCdp.send('Debugger.enable');
  await oldCdp.send('Debugger.pause');
  // The sender posts 'first' (the frozen leader never takes it) and stops too, so that the
  // other follower takes over.
  const cdp = await context.newCDPSession(sender);
  await cdp.send('Debugger.enable');
  const paused = new Promise((resolve) => cdp.once('Debugger.paused', resolve));
  const sending = sender.evaluate(() => {
    window.client.send('first');
    // eslint-disable-next-line no-debugger
    debugger;
  });
  const { callFrames } = await paused;
  assert.equal(await leaderOf([next], 600), next);
  // Still stopped (the new leader's hello waits in its queue), the sender sends 'second'.
  await cdp.send('Debugger.evaluateOnCallFrame', {
    callFrameId: callFrames[0].callFrameId,
    expression: "window.client.send('second')",
  });
  await cdp.send('Debugger.resume');
  await sending;
  await cdp.detach();
  await allReceive([sender, next], ['first', 'second']);
  await noDuplicates([sender, next]);
  await oldCdp.send('Debugger.resume');
  await oldCdp.detach();
  await Promise.all(pages.map((p) => p.close()));
});

test('a follower thawed after more than 5 s does not take over from a leader that is alive', async () => {
  const options = { shareKey: 'user-10' };
  const pages = [await openTab(options), await openTab(options)];
  const leader = await leaderOf(pages);
  const follower = pages.find((p) => p !== leader);
  await allReceive(pages, await sendFrom(pages, 1));
  const cdp = await context.newCDPSession(follower);
  await cdp.send('Debugger.enable');
  await cdp.send('Debugger.pause');
  await leader.waitForTimeout(7000);
  await cdp.send('Debugger.resume');
  await cdp.detach();
  // It beats again (the leader counts it), and hears the leader: no takeover follows.
  for (let i = 0; (await leader.evaluate(() => window.client.tabs)) !== 2; i += 1) {
    assert.ok(i < 400, 'the thawed follower is not counted again');
    await leader.waitForTimeout(25);
  }
  await leader.waitForTimeout(2000);
  assert.equal(await isLeader(leader), true, 'the live leader lost the lead');
  assert.equal(await isLeader(follower), false);
  await Promise.all(pages.map((p) => p.close()));
});

test('tabs of one key but not one protocol mode do not share: a sendConfirmed in protocol mode settles', async () => {
  const plain = await openTab({ shareKey: 'user-11', protocol: false });
  await plain.waitForFunction(() => window.client.isLeader);
  const confirming = await openTab({ shareKey: 'user-11', protocol: true });
  const outcome = await confirming.evaluate(() =>
    Promise.race([
      window.client.sendConfirmed('confirm-me').then(
        () => 'delivered',
        (e) => e.kind,
      ),
      new Promise((resolve) => setTimeout(() => resolve('never settled'), 10_000)),
    ]),
  );
  assert.equal(outcome, 'delivered');
  await Promise.all([plain.close(), confirming.close()]);
});

test("a follower's send of data no client can send is refused through the leader, not left pending", async () => {
  const options = { shareKey: 'user-12' };
  const pages = [await openTab(options), await openTab(options)];
  const leader = await leaderOf(pages);
  const follower = pages.find((p) => p !== leader);
  const outcome = await follower.evaluate(() =>
    Promise.race([
      window.client.sendConfirmed(undefined).then(
        () => 'delivered',
        (e) => e.kind,
      ),
      new Promise((resolve) => setTimeout(() => resolve('never settled'), 10_000)),
    ]),
  );
  assert.equal(outcome, 'rejected');
  await Promise.all(pages.map((p) => p.close()));
});

test('a leader about to be frozen (page lifecycle freeze) hands off at once, and follows once resumed: nothing lost or duplicated', async () => {
  const options = { shareKey: 'user-12' };
  const pages = [await openTab(options), await openTab(options), await openTab(options)];
  const sent = await sendFrom(pages, 5);
  const old = await leaderOf(pages);
  const rest = pages.filter((p) => p !== old);
  await allReceive(pages, sent);
  // Chromium fires `freeze` on the document before it freezes a page; headless Chromium
  // never freezes one, so the test fires it, then stops the page's script (as the frozen
  // test does). Sent in the same task: the session it hands off holds them.
  const held = ['freezing-1', 'freezing-2'];
  sent.push(...held);
  const cdp = await context.newCDPSession(old);
  await cdp.send('Debugger.enable');
  const leads = await old.evaluate((ts) => {
    ts.forEach((t) => window.client.send(t));
    document.dispatchEvent(new Event('freeze'));
    return window.client.isLeader;
  }, held);
  assert.equal(leads, false, 'the leader did not hand off on freeze');
  await cdp.send('Debugger.pause');
  // The next leader takes over from the handoff (no 5 s of silence to wait for).
  const next = await leaderOf(rest);
  await oneConnection(next);
  sent.push(...(await sendFrom(rest, 5)));
  await allReceive(rest, sent);
  peak = 0;
  await cdp.send('Debugger.resume');
  await old.evaluate(() => document.dispatchEvent(new Event('resume')));
  await cdp.detach();
  sent.push(...(await sendFrom(pages, 5)));
  await allReceive(pages, sent);
  await noDuplicates(pages);
  assert.equal(await isLeader(old), false, 'the resumed tab follows');
  assert.equal(await leaderOf(pages), next, 'the new leader keeps the lead');
  const seen = await Promise.all(pages.map((p) => p.evaluate(() => [window.resets, window.stops, window.errors])));
  assert.deepEqual(
    seen,
    pages.map(() => [0, [], []]),
    'no session reset, no stop, no error in any tab',
  );
  assert.equal(peak, 1, 'one connection at the server after the handoff');
  oneSession();
  // Its sends go through the new leader, which counts three tabs.
  assert.equal(typeof (await old.evaluate(() => window.client.sendConfirmed('after-resume'))), 'number');
  assert.equal(await next.evaluate(() => window.client.tabs), 3);
  await Promise.all(pages.map((p) => p.close()));
});

/**
 * Init script of a tab whose channel delivers late (`window.channelDelay` ms, in order):
 * what a busy machine can do, where a Web Lock grant then overtakes the channel's posts.
 */
function slowChannel() {
  const plain = Object.getOwnPropertyDescriptor(BroadcastChannel.prototype, 'onmessage');
  Object.defineProperty(BroadcastChannel.prototype, 'onmessage', {
    configurable: true,
    get() {
      return plain.get.call(this);
    },
    set(f) {
      plain.set.call(this, (e) => (window.channelDelay ? setTimeout(() => f(e), window.channelDelay) : f(e)));
    },
  });
}

test("the lock reaches the next tab before the old leader's last posts: it leads from them, nothing lost", async () => {
  const options = { shareKey: 'user-13' };
  const leader = await openTab(options);
  await leaderOf([leader]);
  const next = await openTab(options, slowChannel);
  assert.equal(await leaderOf([leader, next]), leader);
  await allReceive([leader, next], await sendFrom([leader, next], 1));
  // From now on the next tab reads the channel half a second late; the lock is not late.
  await next.evaluate(() => (window.channelDelay = 500));
  await leader.evaluate(() => {
    const c = window.client;
    c.send('last-plain');
    void c.sendConfirmed('last-confirmed').catch(() => {});
    void c.close();
  });
  await allReceive([next], ['last-plain', 'last-confirmed']);
  await noDuplicates([next]);
  assert.ok(await isLeader(next));
  await oneConnection(next);
  await Promise.all([leader, next].map((p) => p.close()));
});
