// Browser tests of the web chat page (docs/web.md): the real logicd and
// gatewayd on free loopback ports with a temporary data directory, and the
// page in Debian's headless Chromium driven by playwright-core.
//
//   node run.mjs CASE      (run.sh installs playwright-core first)
//
// Environment: LOGICD, GATEWAYD (the built daemons), CHROMIUM (default
// /usr/bin/chromium), MIM_BROWSER_KEEP=1 keeps the temporary directory.
// Exit 0 pass, 1 fail, 77 skip (something needed is missing: scripts/test.sh
// fails the run on a skip unless allowed).
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

const SKIP = 77;
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const LOGICD = process.env.LOGICD;
const GATEWAYD = process.env.GATEWAYD;
const WAIT = 10000; // ms for any expected change on a page
const API_KEY = 'browser-test-key';

function fail(msg) { throw new Error(msg); }
function check(cond, msg) { if (!cond) fail(msg); }
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---- daemons ----
function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => resolve(p)); });
  });
}

class Daemons {
  async start() {
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mim-browser-'));
    [this.logicPort, this.httpPort, this.gwPort] = [await freePort(), await freePort(), await freePort()];
    this.procs = {};
    await this.run('logicd', [LOGICD, '--listen', `127.0.0.1:${this.logicPort}`, '--data-dir',
      path.join(this.dir, 'data'), '--dev-auth', '--http-listen', `127.0.0.1:${this.httpPort}`,
      '--api-key', API_KEY]);
    await this.startGateway();
    this.url = `http://127.0.0.1:${this.gwPort}/`;
  }
  startGateway() {
    return this.run('gatewayd', [GATEWAYD, '--listen', `127.0.0.1:${this.gwPort}`, '--logic',
      `127.0.0.1:${this.logicPort}`, '--http-rate-per-s', '0', '--max-conns-per-ip', '0']);
  }
  // starts one daemon and waits for its ": ready" log line
  async run(name, argv) {
    const log = path.join(this.dir, name + '.log');
    const fd = fs.openSync(log, 'a');
    const from = fs.statSync(log).size;
    const p = spawn(argv[0], argv.slice(1), { stdio: ['ignore', fd, fd] });
    fs.closeSync(fd);
    this.procs[name] = p;
    const until = Date.now() + WAIT;
    while (Date.now() < until) {
      const text = fs.readFileSync(log, 'utf8').slice(from);
      if (/: ready\b/.test(text)) return;
      if (p.exitCode !== null) break;
      await sleep(50);
    }
    fail(`${name} did not start:\n${fs.readFileSync(log, 'utf8').slice(-3000)}`);
  }
  async kill(name, sig = 'SIGKILL') {
    const p = this.procs[name];
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    const done = new Promise((r) => p.once('exit', r));
    p.kill(sig);
    await done;
  }
  async stop() {
    for (const n of ['gatewayd', 'logicd']) await this.kill(n, 'SIGTERM');
    if (this.dir && !process.env.MIM_BROWSER_KEEP) fs.rmSync(this.dir, { recursive: true, force: true });
  }
  logs() {
    let out = '';
    for (const n of ['logicd', 'gatewayd']) {
      const f = path.join(this.dir, n + '.log');
      if (fs.existsSync(f)) out += `---- ${n} ----\n${fs.readFileSync(f, 'utf8').slice(-4000)}\n`;
    }
    return out;
  }
  // POST /api/v1/messages on logicd's HTTP API: a message on a user's
  // behalf, with no browser (docs/http-api.md §5.2)
  async apiSend(from, to, content) {
    const r = await fetch(`http://127.0.0.1:${this.httpPort}/api/v1/messages`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${API_KEY}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ from, to, content }),
    });
    check(r.ok, `api send: ${r.status} ${await r.text()}`);
  }
}

// ---- pages ----
class User {
  constructor(browser, d, uid) { this.browser = browser; this.d = d; this.uid = uid; this.errors = []; }
  async open() {
    this.ctx = await this.browser.newContext();
    this.page = await this.ctx.newPage();
    this.page.on('console', (m) => { if (m.type() === 'error') this.errors.push(m.text()); });
    this.page.on('pageerror', (e) => this.errors.push(String(e)));
    this.response = await this.page.goto(this.d.url);
    await this.page.fill('#uid', this.uid);
    await this.page.click('#login button');
    await this.waitText('#status', 'online');
    return this;
  }
  async waitText(sel, text, timeout = WAIT) {
    try {
      await this.page.waitForFunction(([s, t]) => {
        const e = document.querySelector(s);
        return e && e.textContent.includes(t);
      }, [sel, text], { timeout });
    } catch {
      const now = await this.page.$eval(sel, (e) => e.textContent).catch(() => '(none)');
      const errs = await this.page.$eval('#errors', (e) => e.textContent).catch(() => '');
      fail(`${this.uid}: ${sel} never showed "${text}"; it shows "${now}"; page errors: "${errs}"`);
    }
  }
  conv(key) { return `#convs li[data-key="${key}"]`; }
  async openConv(key) {
    await this.page.waitForSelector(this.conv(key), { timeout: WAIT });
    await this.page.click(this.conv(key));
    await this.page.waitForSelector('#chat:not([hidden])');
  }
  async chatWith(peer) {
    await this.page.fill('#peer', peer);
    await this.page.click('#newchat button');
    await this.page.waitForSelector('#chat:not([hidden])');
  }
  async say(text) {
    await this.page.fill('#text', text);
    await this.page.click('#send button');
  }
  async badge(key) {
    return this.page.$eval(this.conv(key), (e) => e.querySelector('.badge')?.textContent ?? '')
      .catch(() => '(no conversation)');
  }
  async waitBadge(key, want) {
    const until = Date.now() + WAIT;
    let got;
    while (Date.now() < until) {
      got = await this.badge(key);
      if (got === want) return;
      await sleep(50);
    }
    fail(`${this.uid}: badge of ${key} is "${got}", expected "${want}"`);
  }
  noErrors() { check(this.errors.length === 0, `${this.uid}: console errors: ${this.errors.join(' | ')}`); }
}

// ---- the cases ----
const CASES = {
  // the page, its headers, a login, and a silent console
  async page_loads(t) {
    const a = await t.user('alice');
    const h = a.response.headers();
    check(h['content-type'] === 'text/html; charset=utf-8', 'content-type ' + h['content-type']);
    check((h['content-security-policy'] || '').includes("default-src 'self'"), 'no CSP: ' + h['content-security-policy']);
    check(h['x-content-type-options'] === 'nosniff', 'no nosniff');
    for (const f of ['app.js', 'proto.js', 'style.css', 'icon.svg']) {
      const r = await a.page.request.get(t.d.url + 'app/' + f);
      check(r.status() === 200, `${f}: ${r.status()}`);
      check(r.headers()['x-content-type-options'] === 'nosniff', `${f}: no nosniff`);
    }
    const head = await a.page.request.head(t.d.url);
    check(head.status() === 200 && (await head.body()).length === 0, 'HEAD: ' + head.status());
    check(head.headers()['content-length'] === h['content-length'], 'HEAD: another length');
    const bad = await a.page.request.get(t.d.url + 'app/../../etc/passwd');
    check(bad.status() === 404, 'traversal answered ' + bad.status());
    const post = await a.page.request.fetch(t.d.url, { method: 'DELETE' });
    check(post.status() === 405, 'DELETE answered ' + post.status());
    await a.chatWith('bob');
    await a.say('hello');
    await a.waitText('#msgs', 'hello');
    await a.waitText('#msgs .mine .tick', 'sent');
    a.noErrors();
  },

  // two users, two pages, both ways
  async chat_both_ways(t) {
    const a = await t.user('alice'), b = await t.user('bob');
    await a.chatWith('bob');
    await a.say('hi bob');
    await b.openConv('u:alice');
    await b.waitText('#msgs', 'hi bob');
    await b.say('hi alice');
    await a.waitText('#msgs', 'hi alice');
    await a.waitText('#convs', 'hi alice'); // the list's preview
    // content is text, never markup
    await b.say('<img src=x onerror="document.title=1"><b>bold</b>');
    await a.waitText('#msgs', '<b>bold</b>');
    check(!(await a.page.$('#msgs b, #msgs img')), 'message content parsed as HTML');
    a.noErrors(); b.noErrors();
  },

  // create a group with bob, add carol, everyone talks
  async group_chat(t) {
    const a = await t.user('alice'), b = await t.user('bob'), c = await t.user('carol');
    await a.page.fill('#gname', 'team');
    await a.page.fill('#gmembers', 'bob');
    await a.page.click('#newgroup button');
    await a.waitText('#title', '# team');
    await a.page.fill('#newmember', 'carol');
    await a.page.click('#addmember button');
    await a.say('hello team');
    await b.openConv('g:team');
    await b.waitText('#msgs', 'hello team');
    await c.openConv('g:team');
    await c.waitText('#msgs', 'hello team');
    await c.say('carol here');
    await b.waitText('#msgs', 'carol here');
    await a.waitText('#msgs', 'carol here');
    // a sender sees how many members read its message (§18, cmd 36)
    await a.page.click('#msgs .mine .readby');
    await a.waitText('#msgs .mine .readby', 'read by 3 of 3');
    for (const u of [a, b, c]) u.noErrors();
  },

  // 250 messages; the page shows the newest, scrolling up brings the rest
  async history_paging(t) {
    const N = 250;
    for (let i = 1; i <= N; i++) await t.d.apiSend('bob', 'alice', `old message ${i}`);
    const a = await t.user('alice');
    await a.openConv('u:bob');
    await a.waitText('#msgs', `old message ${N}`);
    const count = () => a.page.$$eval('#msgs .msg', (l) => l.length);
    const first = await count();
    check(first < N, `all ${first} messages at once: no paging`);
    for (let i = 0; i < 40 && !(await a.page.$('#msgs .start')); i++) {
      await a.page.$eval('#msgs', (e) => { e.scrollTop = 0; });
      await sleep(300);
    }
    await a.waitText('#msgs', 'start of the conversation');
    check(await count() === N, `after scrolling: ${await count()} messages`);
    await a.waitText('#msgs .msg', 'old message 1'); // the oldest is first
    a.noErrors();
  },

  // gatewayd dies; messages sent meanwhile (one through the API, one typed
  // into the page while it is offline) arrive once it is back
  async reconnect(t) {
    const a = await t.user('alice'), b = await t.user('bob');
    await a.chatWith('bob');
    await a.say('before');
    await b.openConv('u:alice');
    await b.waitText('#msgs', 'before');
    await t.d.kill('gatewayd');
    await a.waitText('#status', 'disconnected');
    await b.waitText('#status', 'disconnected');
    await t.d.apiSend('carol', 'bob', 'while you were away');
    await a.say('typed offline');
    await a.waitText('#msgs .mine:last-child .tick', 'sending');
    await t.d.startGateway();
    await a.waitText('#status', 'online', 20000);
    await b.waitText('#status', 'online', 20000);
    await b.waitText('#msgs', 'typed offline');
    await b.waitText('#convs', 'while you were away');
    await a.waitText('#msgs .mine:last-child .tick', 'read'); // b has it open
    // the console keeps the browser's own "connection refused" lines
    // while the daemon is down; the page itself threw nothing
    check(!a.errors.some((e) => !/WebSocket/.test(e)), 'alice: ' + a.errors.join(' | '));
  },

  // unread badges count pushes, clear on open, stay cleared after a reload
  async unread_badges(t) {
    const a = await t.user('alice'), b = await t.user('bob');
    await a.chatWith('bob');
    for (const m of ['one', 'two', 'three']) await a.say(m);
    await b.waitBadge('u:alice', '3');
    await b.openConv('u:alice');
    await b.waitText('#msgs', 'three');
    await b.waitBadge('u:alice', '');
    await a.say('four');
    await b.waitText('#msgs', 'four');
    await b.waitBadge('u:alice', ''); // open and visible: read at once
    await a.waitText('#msgs .mine:last-child .tick', 'read'); // the mark is stored
    await b.page.reload();
    await b.page.fill('#uid', 'bob');
    await b.page.click('#login button');
    await b.waitText('#convs', 'four');
    await b.waitBadge('u:alice', ''); // the server kept the read position
    a.noErrors(); b.noErrors();
  },

  // 1:1 ticks: "sent" once stored (bob offline), "delivered" once a
  // device of bob's acknowledged it, "read" once bob opened it
  async read_ticks(t) {
    const a = await t.user('alice');
    await a.chatWith('bob');
    await a.say('sent while bob is away');
    await a.waitText('#msgs .mine .tick', 'sent');
    const b = await t.user('bob');
    await a.say('did you read this');
    await b.waitBadge('u:alice', '2');
    await a.waitText('#msgs .mine:last-child .tick', 'delivered');
    await sleep(300);
    const ticks = await a.page.$$eval('#msgs .mine .tick', (l) => l.map((e) => e.textContent));
    // cumulative (§18): the ack of the newest covers the pulled one too
    check(ticks.join() === 'delivered,delivered', 'before bob opened it: ' + ticks.join());
    await b.openConv('u:alice');
    await a.waitText('#msgs .mine .tick', 'read');
    await a.waitText('#msgs .mine:last-child .tick', 'read');
    a.noErrors(); b.noErrors();
  },

  // ---- recall, typing, presence (docs/protocol.md §19-21) ----

  // recall for everyone, delete for me, and a recalled message after a reload
  async recall_and_delete(t) {
    const a = await t.user('alice'), b = await t.user('bob');
    await a.chatWith('bob');
    await a.say('keep this');
    await a.say('oops');
    await b.openConv('u:alice');
    await b.waitText('#msgs', 'oops');
    await a.page.waitForSelector('#msgs .mine:last-child button.recall', { timeout: WAIT });
    await a.page.click('#msgs .mine:last-child button.recall');
    await a.waitText('#msgs .mine:last-child', 'message recalled');
    await b.waitText('#msgs .msg:last-child', 'message recalled');
    check(!(await b.page.$eval('#msgs', (e) => e.textContent)).includes('oops'), 'bob still sees the content');
    // delete for me: gone for bob, still there for alice
    await b.page.click('#msgs li.msg >> nth=0 >> button.delete');
    await b.page.waitForFunction(() => !document.querySelector('#msgs').textContent.includes('keep this'), null, { timeout: WAIT });
    await b.page.reload();
    await b.page.fill('#uid', 'bob');
    await b.page.click('#login button');
    await b.openConv('u:alice');
    await b.waitText('#msgs', 'message recalled');
    check(!(await b.page.$eval('#msgs', (e) => e.textContent)).includes('keep this'), 'deleted message back after reload');
    await a.waitText('#msgs', 'keep this');
    a.noErrors(); b.noErrors();
  },

  // typing in an open conversation shows on the peer's page, then fades
  async typing_indicator(t) {
    const a = await t.user('alice'), b = await t.user('bob');
    await a.chatWith('bob');
    await a.say('hi');
    await b.openConv('u:alice');
    await a.page.type('#text', 'I am typ', { delay: 20 });
    await b.waitText('#typing', 'alice is typing');
    await b.page.waitForFunction(() => document.querySelector('#typing').textContent === '', null, { timeout: WAIT });
    a.noErrors(); b.noErrors();
  },

  // the peer's dot turns on when it logs in, off when it leaves
  async presence_dots(t) {
    const a = await t.user('alice');
    await a.chatWith('bob');
    await a.say('are you there');
    await a.waitText('#msgs .mine .tick', 'sent');
    const dot = () => a.page.$eval('#convs li[data-key="u:bob"] .dot', (e) => e.className);
    check((await dot()).includes('off'), 'bob shown online before he logged in');
    const b = await t.user('bob');
    await a.page.waitForSelector('#convs li[data-key="u:bob"] .dot.on', { timeout: WAIT });
    await b.ctx.close();
    await a.page.waitForSelector('#convs li[data-key="u:bob"] .dot.off', { timeout: WAIT });
    a.noErrors();
  },
};

// ---- main ----
async function main() {
  const name = process.argv[2];
  if (!CASES[name]) { console.error(`usage: run.mjs {${Object.keys(CASES).join('|')}}`); return 2; }
  for (const [what, p] of [['chromium', CHROMIUM], ['logicd', LOGICD], ['gatewayd', GATEWAYD]]) {
    if (!p || !fs.existsSync(p)) { console.error(`skip: no ${what} (${p})`); return SKIP; }
  }
  const { chromium } = await import('playwright-core');
  const d = new Daemons();
  let browser;
  const watchdog = setTimeout(() => { console.error('watchdog: case took too long'); process.exit(1); }, 110000);
  try {
    await d.start();
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--headless', '--no-sandbox'] });
    const users = [];
    const t = { d, user: async (uid) => { const u = new User(browser, d, uid); users.push(u); return u.open(); } };
    await CASES[name](t);
    console.log(`ok ${name}`);
    return 0;
  } catch (e) {
    console.error(`FAIL ${name}: ${e.stack || e}`);
    console.error(d.logs());
    return 1;
  } finally {
    clearTimeout(watchdog);
    if (browser) await browser.close().catch(() => {});
    await d.stop();
  }
}

process.exit(await main());
