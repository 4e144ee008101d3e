// The libmim web chat page (docs/web.md). Plain DOM, no framework: one
// connection (conn.js-like part at the top), one state object (`S`), and
// render functions that rebuild the small parts of the page that changed.
// Every text from the server goes into the page through textContent, never
// innerHTML: content is hostile.
import { CAP, CMD, frame, frames } from './proto.js';

const $ = (id) => document.getElementById(id);
const HEARTBEAT_MS = 30000;  // §1.2: a client that wants to notice a dead
const HEARTBEAT_WAIT_MS = 15000; // server sooner than TCP sends its own
const BACKOFF_MAX_MS = 10000;
const PAGE = 30;             // history items per page
const FIRST_PULL = 100;      // entries pulled at the first login
const TYPING_EVERY_MS = 3000; // at most one TypingRequest per this
const TYPING_SHOW_MS = 5000;  // an indicator lasts this long
const MAX_U64 = (1n << 64n) - 1n;

// ---- state ----
const S = {
  uid: '', token: '', device: '',
  ws: null, authed: false, caps: 0, stopped: true,
  seq: 0, pending: new Map(), // seq -> {resolve, reject}
  backoff: 500, reconnectTimer: 0, hbTimer: 0, hbDeadline: 0,
  hwm: -1,                    // contiguous inbox_seq we hold (-1: none yet)
  convs: new Map(),           // key -> conversation
  open: '',                   // key of the open conversation
  outbox: new Map(),          // client_msg_id -> unsent message (resent on reconnect)
  presence: new Map(),        // uid -> online
  lastTyping: 0,
};
const keyOf = (peer, group) => (group ? 'g:' + group : 'u:' + peer);
const can = (bit) => (S.caps & bit) !== 0;

function conv(key) {
  let c = S.convs.get(key);
  if (!c) {
    c = { key, peer: key[0] === 'u' ? key.slice(2) : '', group: key[0] === 'g' ? key.slice(2) : '',
      msgs: new Map(), unread: 0, readSeq: 0, peerReadSeq: 0, peerDeliveredSeq: 0, lastSeq: 0, lastTime: 0,
      preview: '', more: true, loaded: false, typing: 0, readBy: new Map() };
    S.convs.set(key, c);
  }
  return c;
}

// ---- connection ----
function send(cmd, name, obj = {}) {
  return new Promise((resolve, reject) => {
    if (!S.ws || S.ws.readyState !== WebSocket.OPEN) return reject(new Error('not connected'));
    const seq = ++S.seq;
    S.pending.set(seq, { resolve, reject, cmd });
    S.ws.send(frame(cmd, name, { ...obj, seq }));
  });
}
// a packet without a reply (acks, typing)
function post(cmd, name, obj) {
  if (S.ws && S.ws.readyState === WebSocket.OPEN && S.authed) S.ws.send(frame(cmd, name, obj));
}

function connect() {
  clearTimeout(S.reconnectTimer);
  const url = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws';
  status('connecting…');
  const ws = new WebSocket(url);
  ws.binaryType = 'arraybuffer';
  S.ws = ws;
  ws.onopen = () => login().catch((e) => { showError(e.message); ws.close(); });
  ws.onmessage = (ev) => {
    if (ws !== S.ws) return;
    let list;
    try { list = frames(ev.data); } catch (e) { showError('protocol: ' + e.message); ws.close(); return; }
    S.hbDeadline = 0;
    for (const f of list) dispatch(f.cmd, f.msg);
  };
  ws.onclose = (ev) => {
    if (ws !== S.ws) return;
    S.ws = null;
    S.authed = false;
    clearInterval(S.hbTimer);
    for (const p of S.pending.values()) p.reject(new Error('connection lost'));
    S.pending.clear();
    if (S.stopped) return;
    // backoff with jitter: a restarted server is not hit by every page at once
    const wait = S.backoff * (0.5 + Math.random() / 2);
    S.backoff = Math.min(S.backoff * 2, BACKOFF_MAX_MS);
    status(`disconnected (${ev.code}), retrying in ${Math.round(wait / 100) / 10} s`);
    S.reconnectTimer = setTimeout(connect, wait);
  };
}

async function login() {
  const seq = ++S.seq;
  // the AuthRequest always travels alone, before anything else (§1, §6)
  const p = new Promise((resolve, reject) => S.pending.set(seq, { resolve, reject }));
  S.ws.send(frame(CMD.AUTH, 'AuthRequest', { token: S.token || 'token', uid: S.uid, device: S.device,
    ts: Date.now(), seq, caps: CAP.BATCH | CAP.READ | CAP.CHANGE | CAP.TYPING | CAP.PRESENCE | CAP.LARGE }));
  const r = await p;
  if (r.status !== 0) {
    S.stopped = true; // a refused token does not get better by retrying (§6)
    S.ws.close();
    showLogin(`login refused: ${r.status} ${r.msg}`);
    return;
  }
  S.authed = true;
  S.caps = r.caps;
  S.backoff = 500;
  status('online');
  $('app').hidden = false;
  $('login').hidden = true;
  $('me').textContent = S.uid;
  S.hbTimer = setInterval(heartbeat, HEARTBEAT_MS);
  // The page keeps nothing on disk: at its first login the conversation
  // list (counts, previews) and history (on open) show the past, so only
  // the newest FIRST_PULL entries of what this device did not acknowledge
  // are pulled, not a whole inbox. Later logins of the page pull all that
  // came while it was away.
  if (S.hwm < 0) S.hwm = Math.max(r.ack_seq, r.last_inbox_seq - FIRST_PULL);
  await resync();
}

function heartbeat() {
  if (S.hbDeadline && Date.now() > S.hbDeadline) { S.ws && S.ws.close(); return; }
  if (!S.hbDeadline) S.hbDeadline = Date.now() + HEARTBEAT_WAIT_MS;
  post(CMD.HEARTBEAT, null, {});
}

// After every login: what happened while we were away (§14).
async function resync() {
  try {
    await loadConvs();
    await loadGroups();
    await pull();
    for (const m of S.outbox.values()) sendMessage(m); // same client_msg_id: stored once
    if (S.open) {
      const c = conv(S.open);
      await loadHistory(c, true);
      if (visible() && c.unread > 0) markRead(c);
    }
    subscribePresence();
  } catch (e) { showError(e.message); }
  render();
}

function dispatch(cmd, m) {
  if (m.seq && S.pending.has(m.seq) && cmd !== CMD.C2C_PUSH && cmd !== CMD.C2G_PUSH) {
    const p = S.pending.get(m.seq);
    S.pending.delete(m.seq);
    if (cmd === CMD.ERROR) p.reject(Object.assign(new Error(`error ${m.code}: ${m.msg}`), m));
    else p.resolve(m);
    return;
  }
  if (cmd === CMD.ERROR && !m.seq && m.cmd) {
    // refused from its header or undecodable: seq 0, matched by order and
    // cmd (§4); the oldest request of that cmd (Map keeps send order)
    for (const [seq, p] of S.pending) {
      if (p.cmd !== m.cmd) continue;
      S.pending.delete(seq);
      p.reject(Object.assign(new Error(`error ${m.code}: ${m.msg}`), m));
      return;
    }
  }
  switch (cmd) {
    case CMD.C2C_PUSH: case CMD.C2G_PUSH: case CMD.SERVER_PUSH: onPush(cmd, m); break;
    case CMD.READ_SYNC: onReadState(m); break;
    case CMD.READ_RECEIPT: {
      const c = conv(keyOf(m.from, ''));
      c.peerReadSeq = Math.max(c.peerReadSeq, Number(m.read_seq));
      render();
      break;
    }
    case CMD.DELIVERED: { // reached a device of the peer (§18)
      const c = conv(keyOf(m.from, ''));
      c.peerDeliveredSeq = Math.max(c.peerDeliveredSeq, Number(m.conv_seq));
      render();
      break;
    }
    case CMD.MSG_CHANGED: onChanged(m); break;
    case CMD.TYPING: {
      const c = conv(keyOf(m.from, m.group));
      c.typing = Date.now() + TYPING_SHOW_MS;
      c.typingWho = m.from;
      render();
      setTimeout(render, TYPING_SHOW_MS + 50);
      break;
    }
    case CMD.PRESENCE: S.presence.set(m.uid, m.online); render(); break;
    case CMD.KICK: onKick(m); break;
    case CMD.ERROR: showError(`error ${m.code}: ${m.msg}`); break;
    default: break; // heartbeat replies, and pushes a newer server adds
  }
}

function onKick(m) {
  showError(`disconnected by the server: kick ${m.reason} ${m.msg}`);
  // another login of this device, or an expired token: reconnecting would
  // fight the other tab or fail (§5.2); every other kick reconnects
  if (m.reason === 0 || m.reason === 5 || m.reason === 1) {
    S.stopped = true;
    showLogin('logged out: ' + (m.msg || 'kick ' + m.reason));
  }
}

// ---- receiving ----
function addMsg(c, m) {
  const id = m.msg_id;
  const old = c.msgs.get(id) || (m.client_msg_id && [...c.msgs.values()].find(
    (x) => x.mine && x.client_msg_id === m.client_msg_id && !x.msg_id));
  if (old) {
    if (!old.msg_id) c.msgs.delete(old.client_msg_id);
    Object.assign(old, m, { status: old.status === 'read' ? 'read' : 'sent' });
    c.msgs.set(id, old);
    if (old.conv_seq > c.lastSeq) { c.lastSeq = old.conv_seq; c.lastTime = old.send_time; c.preview = old.content; }
    return old;
  }
  const x = { ...m, mine: m.from === S.uid, status: 'sent' };
  c.msgs.set(id, x);
  if (x.conv_seq > c.lastSeq) {
    c.lastSeq = x.conv_seq; c.lastTime = x.send_time; c.preview = x.content;
  }
  return x;
}

// A stored entry reached us (push or pull): show it, count it unread.
function receive(m, fresh) {
  const peer = m.group ? '' : m.from === S.uid ? m.to : m.from;
  const c = conv(keyOf(peer, m.group));
  const isNew = !c.msgs.has(m.msg_id) && m.conv_seq > c.lastSeq;
  addMsg(c, m);
  if (fresh && isNew && m.from !== S.uid) {
    if (c.group && S.open === c.key) refreshReadBy(c); // a reply: likely read
    if (S.open === c.key && visible()) markRead(c);
    else c.unread += 1;
  }
  if (m.from === S.uid) c.readSeq = Math.max(c.readSeq, m.conv_seq);
}

function onPush(cmd, m) {
  const seq = Number(m.inbox_seq);
  if (cmd !== CMD.SERVER_PUSH) {
    receive({ from: m.from, to: m.to, group: m.group || '', content: m.content, msg_id: m.msg_id,
      send_time: m.ts, conv_seq: Number(m.conv_seq), type: m.type, client_msg_id: m.client_msg_id,
      state: 0 }, true);
  }
  // a large group's message is in no inbox: nothing to acknowledge (§22);
  // the page shows groups from history, so a missed one appears on open
  if (seq === 0 && cmd === CMD.C2G_PUSH) { render(); return; }
  if (seq > S.hwm + 1) { pull().then(render, (e) => showError(e.message)); return; } // a gap (§8)
  if (seq === S.hwm + 1) S.hwm = seq;
  post(cmd === CMD.C2G_PUSH ? CMD.C2G_ACK : cmd + 1, 'PushAck', { msg_id: m.msg_id, inbox_seq: seq });
  render();
}

// Offline entries: everything after what we hold, page by page (§9).
let pulling = null;
function pull() {
  pulling ??= (async () => {
    try {
      for (;;) {
        const r = await send(CMD.PULL, 'PullRequest', { after_seq: S.hwm, limit: 200, $present: ['after_seq'] });
        // not counted unread here: the conversation list already did
        for (const m of r.msg) { if (m.type !== 3) receive(m, false); S.hwm = Math.max(S.hwm, m.inbox_seq); }
        if (!r.has_more) break;
      }
      if (S.hwm > 0) post(CMD.C2C_ACK, 'PushAck', { inbox_seq: S.hwm });
    } finally { pulling = null; }
  })();
  return pulling;
}

async function loadConvs() {
  let before = 0;
  for (let page = 0; page < 10; page++) { // the newest 1000 are plenty for a page
    const r = await send(CMD.CONV_LIST, 'ConvListRequest', { before_msg_id: before, limit: 100 });
    for (const it of r.convs) {
      const c = conv(keyOf(it.peer, it.group));
      Object.assign(c, { unread: Number(it.unread), readSeq: Number(it.read_seq), lastSeq: Number(it.last_conv_seq),
        lastTime: it.last_time, preview: it.preview, peerReadSeq: Math.max(c.peerReadSeq, Number(it.peer_read_seq)) });
      before = it.last_msg_id;
    }
    if (!r.has_more) break;
  }
}

async function loadGroups() {
  let after = '';
  for (let page = 0; page < 10; page++) {
    const r = await send(CMD.GROUP_LIST, 'GroupRequest', { after_group: after, limit: 500 });
    for (const g of r.groups) { conv(keyOf('', g)); after = g; }
    if (!r.has_more) break;
  }
}

// History of one conversation, newest first (§10). fresh: the newest page
// again (after a reconnect or a send), else the page before the oldest held.
async function loadHistory(c, fresh) {
  if (c.loading || (!fresh && !c.more)) return;
  c.loading = true;
  try {
    const held = [...c.msgs.values()].filter((m) => m.conv_seq > 0).map((m) => m.conv_seq);
    const before = fresh || !held.length ? 0 : Math.min(...held);
    const r = await send(CMD.HISTORY, 'HistoryRequest', { peer: c.peer, group: c.group, before_conv_seq: before, limit: PAGE });
    for (const m of r.msg) addMsg(c, m);
    if (!fresh || !c.loaded) c.more = r.has_more;
    c.loaded = true;
  } finally { c.loading = false; }
}

function onReadState(m) {
  const c = conv(keyOf(m.peer, m.group));
  c.readSeq = Math.max(c.readSeq, Number(m.read_seq));
  c.unread = Number(m.unread);
  render();
}

function onChanged(m) {
  const c = conv(keyOf(m.peer, m.group));
  const x = c.msgs.get(m.msg_id);
  if (m.action === 3) c.msgs.delete(m.msg_id);
  else if (x && m.action === 1) Object.assign(x, { state: 1, content: '' });
  else if (x && m.action === 2) Object.assign(x, { state: 2, content: m.content });
  render();
}

// ---- actions ----
const visible = () => document.visibilityState === 'visible';

let markTimer = 0;
function markRead(c) {
  // one mark for a burst of messages; "up to the newest stored" (§18)
  clearTimeout(markTimer);
  markTimer = setTimeout(() => {
    if (!S.authed) return;
    send(CMD.MARK_READ, 'MarkReadRequest', { peer: c.peer, group: c.group, conv_seq: MAX_U64 })
      .then((r) => onReadState(r), (e) => showError(e.message));
  }, 100);
  c.unread = 0;
}

function sendMessage(m) {
  S.outbox.set(m.client_msg_id, m);
  const c = conv(keyOf(m.to, m.group));
  if (!c.msgs.has(m.client_msg_id) && !m.msg_id) c.msgs.set(m.client_msg_id, { ...m, mine: true, status: 'sending', conv_seq: 0 });
  render();
  if (!S.authed) return; // sent after the next login (resync)
  const req = m.group ? send(CMD.C2G_SEND, 'C2GSendRequest', m) : send(CMD.C2C_SEND, 'C2CSendRequest', m);
  req.then((r) => {
    S.outbox.delete(m.client_msg_id);
    const x = c.msgs.get(m.client_msg_id);
    if (x) { c.msgs.delete(m.client_msg_id); Object.assign(x, { msg_id: r.msg_id, send_time: r.ts, status: 'sent' }); c.msgs.set(r.msg_id, x); }
    if (r.inbox_seq === S.hwm + 1) S.hwm = r.inbox_seq;
    // the send reply has no conv_seq: the newest history page gives it
    // (needed for read ticks and read-by)
    // a first message makes the peer someone we may see the presence of
    if (c.peer && !S.presence.has(c.peer)) subscribePresence();
    return loadHistory(c, true).then(() => refreshReadBy(c));
  }).then(render, (e) => {
    if (e.code) { // refused by the server: not resent
      S.outbox.delete(m.client_msg_id);
      const x = c.msgs.get(m.client_msg_id);
      if (x) x.status = 'failed';
      showError(`send failed: ${e.message}`);
      render();
    }
  });
}

async function openConv(key) {
  S.open = key;
  const c = conv(key);
  render();
  try {
    await loadHistory(c, true);
    // a first page that does not fill the view cannot be scrolled up:
    // fetch older pages until it does (or the start is reached)
    for (let i = 0; i < 5 && c.more; i++) {
      render();
      const box = $('msgs');
      if (box.scrollHeight > box.clientHeight + 40) break;
      await loadHistory(c, false);
    }
    if (visible() && (c.unread > 0 || c.lastSeq > c.readSeq)) markRead(c);
    refreshReadBy(c);
    if (c.peer) subscribePresence();
  } catch (e) { showError(e.message); }
  render();
  const list = $('msgs');
  list.scrollTop = list.scrollHeight;
}

// "read by N of M" for my newest few group messages (group reads are not
// pushed, §18: asked for on open and on a click)
function refreshReadBy(c) {
  if (!c.group) return;
  const mine = [...c.msgs.values()].filter((m) => m.mine && m.conv_seq > 0)
    .sort((a, b) => b.conv_seq - a.conv_seq).slice(0, 5);
  for (const m of mine) {
    send(CMD.READ_BY, 'ReadByRequest', { group: c.group, conv_seq: m.conv_seq, limit: 0 })
      .then((r) => { c.readBy.set(m.conv_seq, r); render(); }, () => {});
  }
}

function subscribePresence() {
  if (!can(CAP.PRESENCE)) return;
  const uids = [...S.convs.values()].filter((c) => c.peer).map((c) => c.peer).slice(0, 100);
  if (!uids.length) return;
  send(CMD.PRESENCE_REQ, 'PresenceRequest', { uids, subscribe: true }).then((r) => {
    for (const it of r.items) S.presence.set(it.uid, it.online);
    render();
  }, () => {});
}

function change(c, m, action) {
  send(CMD.MSG_CHANGE, 'MsgChangeRequest', { msg_id: m.msg_id, action, peer: c.peer, group: c.group })
    .then((r) => onChanged({ ...r, peer: c.peer, group: c.group }), (e) => showError(e.message));
}

// ---- rendering ----
function status(t) { $('status').textContent = t; }
function showError(t) {
  const li = document.createElement('li');
  li.textContent = `${new Date().toLocaleTimeString()} ${t}`;
  const box = $('errors');
  box.prepend(li);
  while (box.children.length > 5) box.lastChild.remove();
}
function showLogin(why) {
  $('login').hidden = false;
  $('app').hidden = true;
  status(why);
}
function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function render() {
  const list = $('convs');
  list.replaceChildren();
  const sorted = [...S.convs.values()].sort((a, b) => (b.lastTime - a.lastTime) || a.key.localeCompare(b.key));
  for (const c of sorted) {
    const li = el('li', 'conv' + (c.key === S.open ? ' open' : ''));
    li.dataset.key = c.key;
    if (c.peer) li.append(el('span', 'dot ' + (S.presence.get(c.peer) ? 'on' : 'off')));
    li.append(el('span', 'name', c.group ? '# ' + c.group : c.peer));
    if (c.unread > 0) li.append(el('span', 'badge', String(c.unread)));
    li.append(el('div', 'preview', c.preview));
    li.onclick = () => openConv(c.key);
    list.append(li);
  }
  const c = S.open && conv(S.open);
  $('chat').hidden = !c;
  if (!c) return;
  $('title').textContent = c.group ? '# ' + c.group : c.peer;
  $('addmember').hidden = !c.group;
  $('typing').textContent = c.typing > Date.now() ? `${c.typingWho} is typing…` : '';
  const box = $('msgs');
  const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 20;
  const fromBottom = box.scrollHeight - box.scrollTop;
  box.replaceChildren();
  if (c.loaded && !c.more) box.append(el('li', 'start', 'start of the conversation'));
  const msgs = [...c.msgs.values()].sort((a, b) => (a.conv_seq || 1e18) - (b.conv_seq || 1e18));
  for (const m of msgs) box.append(renderMsg(c, m));
  // keep the reader's place: at the bottom stay there, else where they were
  box.scrollTop = atBottom ? box.scrollHeight : box.scrollHeight - fromBottom;
}

function renderMsg(c, m) {
  const li = el('li', 'msg' + (m.mine ? ' mine' : '') + (m.type === 1 ? ' system' : ''));
  li.dataset.seq = m.conv_seq;
  if (c.group && !m.mine && m.type !== 1) li.append(el('span', 'from', m.from));
  li.append(el('span', 'text', m.state === 1 ? 'message recalled' : m.content));
  if (m.state === 1) li.classList.add('recalled');
  if (m.state === 2) li.append(el('span', 'edited', ' (edited)'));
  if (m.mine) {
    let tick = m.status;
    if (c.peer && m.conv_seq && m.conv_seq <= c.peerReadSeq) tick = 'read';
    else if (c.peer && m.conv_seq && m.conv_seq <= c.peerDeliveredSeq) tick = 'delivered';
    li.append(el('span', 'tick ' + tick, tick));
    const rb = c.group && c.readBy.get(m.conv_seq);
    if (rb) {
      const b = el('button', 'readby', `read by ${rb.read_count} of ${rb.member_count}`);
      b.onclick = () => refreshReadBy(c);
      li.append(b);
    }
  }
  if (can(CAP.CHANGE) && m.msg_id && m.state !== 1 && m.type !== 1) {
    if (m.mine) { const b = el('button', 'recall', 'recall'); b.onclick = () => change(c, m, 1); li.append(b); }
    const d = el('button', 'delete', 'delete'); d.onclick = () => change(c, m, 3); li.append(d);
  }
  return li;
}

// ---- wiring ----
function randomId() {
  const b = crypto.getRandomValues(new Uint8Array(8));
  return [...b].map((x) => x.toString(16).padStart(2, '0')).join('');
}

$('login').onsubmit = (ev) => {
  ev.preventDefault();
  const uid = $('uid').value.trim();
  if (uid !== S.uid) { S.convs.clear(); S.outbox.clear(); S.hwm = -1; S.open = ''; } // another user
  S.uid = uid;
  S.token = $('token').value; // in memory only: never in a URL or storage
  // one device per tab, kept across reloads of the tab: two tabs of one
  // user are two devices and do not kick each other
  S.device = sessionStorage.getItem('mim-device') || 'web-' + randomId();
  sessionStorage.setItem('mim-device', S.device);
  S.stopped = false;
  connect();
};
$('newchat').onsubmit = (ev) => {
  ev.preventDefault();
  const peer = $('peer').value.trim();
  if (peer) { $('peer').value = ''; openConv(keyOf(peer, '')); }
};
$('newgroup').onsubmit = (ev) => {
  ev.preventDefault();
  const group = $('gname').value.trim();
  const members = $('gmembers').value.split(/[\s,]+/).filter(Boolean);
  send(CMD.GROUP_CREATE, 'GroupRequest', { group, members }).then(() => {
    $('gname').value = ''; $('gmembers').value = '';
    return openConv(keyOf('', group));
  }, (e) => showError(`create ${group}: ${e.message}`));
};
$('addmember').onsubmit = (ev) => {
  ev.preventDefault();
  const c = conv(S.open);
  const members = $('newmember').value.split(/[\s,]+/).filter(Boolean);
  send(CMD.GROUP_ADD, 'GroupRequest', { group: c.group, members }).then(() => {
    $('newmember').value = '';
    return loadHistory(c, true);
  }, (e) => showError(`add: ${e.message}`)).then(render);
};
$('send').onsubmit = (ev) => {
  ev.preventDefault();
  const text = $('text').value;
  const c = S.open && conv(S.open);
  if (!text || !c) return;
  $('text').value = '';
  S.lastTyping = 0; // a sent message ends the typing: the next key says so again
  sendMessage({ to: c.peer, group: c.group, content: text, client_msg_id: randomId() });
};
$('text').oninput = () => {
  const c = S.open && conv(S.open);
  if (!c || !can(CAP.TYPING) || Date.now() - S.lastTyping < TYPING_EVERY_MS) return;
  S.lastTyping = Date.now();
  post(CMD.TYPING_REQ, 'TypingRequest', { peer: c.peer, group: c.group });
};
// scrolled to the top: the page before (§10)
$('msgs').onscroll = () => {
  const c = S.open && conv(S.open);
  if (c && $('msgs').scrollTop < 40 && c.more && !c.loading) loadHistory(c, false).then(render, (e) => showError(e.message));
};
// coming back to the tab reads the open conversation
document.addEventListener('visibilitychange', () => {
  const c = S.open && conv(S.open);
  if (c && visible() && c.unread > 0) { markRead(c); render(); }
});
