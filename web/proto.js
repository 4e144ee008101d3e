// The libmim wire protocol (docs/protocol.md §2-§3) for the web page: a
// 12-byte header (version, cmd, body_len: big-endian u32) and a protobuf
// body. A hand-written encoder/decoder for the few messages the page uses,
// so that the page has no dependency and no build step.
//
// SCHEMA mirrors lib/proto/client.proto: one line per field,
// [number, name, type], a type starting with '*' is repeated. Adding a field
// is adding one line; fields not listed are skipped on decode, as protobuf
// requires (later servers add fields).
//
// 64-bit fields decode exactly: a value up to 2^53 comes back as a Number
// (msg_id, inbox_seq, conv_seq always do in practice), a larger one as a
// BigInt. Encoding takes either.

export const SCHEMA = {
  AuthRequest: [[1, 'token', 'string'], [2, 'uid', 'string'], [3, 'ts', 'int64'],
    [4, 'seq', 'int64'], [5, 'device', 'string'], [6, 'caps', 'uint32']],
  AuthResponse: [[1, 'status', 'int32'], [2, 'msg', 'string'], [4, 'seq', 'int64'],
    [5, 'last_inbox_seq', 'uint64'], [6, 'ack_seq', 'uint64'], [7, 'caps', 'uint32']],
  C2CSendRequest: [[2, 'to', 'string'], [3, 'content', 'string'], [5, 'seq', 'int64'],
    [6, 'client_msg_id', 'string'], [7, 'type', 'uint32']],
  SendResponse: [[1, 'msg_id', 'int64'], [2, 'ts', 'int64'], [3, 'seq', 'int64'],
    [4, 'inbox_seq', 'uint64']],
  C2CPushRequest: [[1, 'from', 'string'], [2, 'to', 'string'], [3, 'content', 'string'],
    [4, 'msg_id', 'int64'], [5, 'ts', 'int64'], [7, 'type', 'uint32'],
    [8, 'client_msg_id', 'string'], [9, 'inbox_seq', 'uint64'], [10, 'conv_seq', 'uint64']],
  PushAck: [[1, 'msg_id', 'int64'], [4, 'inbox_seq', 'uint64']],
  C2GSendRequest: [[2, 'group', 'string'], [3, 'content', 'string'], [5, 'seq', 'int64'],
    [6, 'client_msg_id', 'string'], [7, 'type', 'uint32']],
  C2GPushRequest: [[1, 'from', 'string'], [2, 'to', 'string'], [3, 'group', 'string'],
    [4, 'content', 'string'], [5, 'msg_id', 'int64'], [6, 'ts', 'int64'], [8, 'type', 'uint32'],
    [9, 'client_msg_id', 'string'], [10, 'inbox_seq', 'uint64'], [11, 'conv_seq', 'uint64']],
  PullRequest: [[3, 'limit', 'int32'], [5, 'seq', 'int64'], [6, 'after_seq', 'uint64']],
  PullMsg: [[1, 'from', 'string'], [2, 'group', 'string'], [3, 'content', 'string'],
    [4, 'msg_id', 'int64'], [5, 'send_time', 'int64'], [8, 'inbox_seq', 'uint64'],
    [9, 'to', 'string'], [10, 'type', 'uint32'], [11, 'client_msg_id', 'string'],
    [13, 'conv_seq', 'uint64'], [14, 'state', 'uint32'], [15, 'change_time', 'int64']],
  PullResponse: [[1, 'msg', '*PullMsg'], [3, 'seq', 'int64'], [4, 'has_more', 'bool'],
    [5, 'last_inbox_seq', 'uint64']],
  ServerPush: [[1, 'from', 'string'], [3, 'content', 'string'], [5, 'msg_id', 'int64'],
    [6, 'ts', 'int64'], [8, 'type', 'uint32'], [9, 'inbox_seq', 'uint64']],
  Kick: [[1, 'reason', 'int32'], [5, 'msg', 'string']],
  Error: [[1, 'code', 'int32'], [2, 'msg', 'string'], [3, 'seq', 'int64'], [4, 'cmd', 'uint32'],
    [5, 'retryable', 'bool']],
  GroupRequest: [[1, 'group', 'string'], [2, 'members', '*string'], [4, 'seq', 'int64'],
    [5, 'after_group', 'string'], [6, 'limit', 'int32']],
  GroupResponse: [[1, 'group', 'string'], [2, 'members', '*string'], [4, 'seq', 'int64'],
    [5, 'groups', '*string'], [6, 'has_more', 'bool']],
  HistoryRequest: [[1, 'peer', 'string'], [2, 'group', 'string'], [3, 'before_conv_seq', 'uint64'],
    [4, 'limit', 'int32'], [6, 'seq', 'int64']],
  HistoryResponse: [[1, 'msg', '*PullMsg'], [2, 'has_more', 'bool'], [4, 'seq', 'int64']],
  // ---- conversations and read receipts (§18) ----
  ConvItem: [[1, 'peer', 'string'], [2, 'group', 'string'], [3, 'last_msg_id', 'int64'],
    [4, 'last_conv_seq', 'uint64'], [5, 'last_time', 'int64'], [6, 'last_from', 'string'],
    [7, 'last_type', 'uint32'], [8, 'preview', 'string'], [9, 'preview_cut', 'bool'],
    [10, 'read_seq', 'uint64'], [11, 'unread', 'uint64'], [12, 'peer_read_seq', 'uint64']],
  ConvListRequest: [[1, 'before_msg_id', 'int64'], [2, 'limit', 'int32'], [4, 'seq', 'int64']],
  ConvListResponse: [[1, 'convs', '*ConvItem'], [2, 'has_more', 'bool'], [4, 'seq', 'int64']],
  MarkReadRequest: [[1, 'peer', 'string'], [2, 'group', 'string'], [3, 'conv_seq', 'uint64'],
    [5, 'seq', 'int64']],
  ReadState: [[1, 'peer', 'string'], [2, 'group', 'string'], [3, 'read_seq', 'uint64'],
    [4, 'unread', 'uint64'], [6, 'seq', 'int64']],
  ReadReceipt: [[1, 'from', 'string'], [2, 'read_seq', 'uint64']],
  DeliveryReceipt: [[1, 'from', 'string'], [2, 'conv_seq', 'uint64']],
  ReadByRequest: [[1, 'group', 'string'], [2, 'conv_seq', 'uint64'], [4, 'limit', 'int32'],
    [6, 'seq', 'int64']],
  ReadByResponse: [[1, 'group', 'string'], [2, 'conv_seq', 'uint64'], [3, 'read_count', 'uint64'],
    [4, 'member_count', 'uint64'], [5, 'readers', '*string'], [8, 'seq', 'int64']],
  // ---- recall / edit / delete (cmds 44-46) ----
  MsgChangeRequest: [[1, 'msg_id', 'int64'], [2, 'action', 'uint32'], [3, 'content', 'string'],
    [4, 'peer', 'string'], [5, 'group', 'string'], [7, 'seq', 'int64']],
  MsgChanged: [[1, 'msg_id', 'int64'], [2, 'action', 'uint32'], [3, 'actor', 'string'],
    [4, 'peer', 'string'], [5, 'group', 'string'], [6, 'conv_seq', 'uint64'],
    [7, 'content', 'string'], [8, 'change_time', 'int64'], [10, 'seq', 'int64']],
  // ---- typing and presence (cmds 48-52) ----
  TypingRequest: [[1, 'peer', 'string'], [2, 'group', 'string'], [4, 'seq', 'int64']],
  Typing: [[1, 'from', 'string'], [2, 'group', 'string']],
  PresenceItem: [[1, 'uid', 'string'], [2, 'online', 'bool'], [3, 'last_seen', 'int64']],
  PresenceRequest: [[1, 'uids', '*string'], [2, 'subscribe', 'bool'], [4, 'seq', 'int64']],
  PresenceResponse: [[1, 'items', '*PresenceItem'], [3, 'seq', 'int64']],
  Presence: [[1, 'uid', 'string'], [2, 'online', 'bool'], [3, 'last_seen', 'int64']],
};

// cmd -> message of its body (docs/protocol.md §4); 0, 1: no body.
export const CMD = {
  HEARTBEAT: 0, HEARTBEAT_RSP: 1, AUTH: 2, AUTH_RSP: 3, C2C_SEND: 6, C2C_SEND_RSP: 7,
  C2C_PUSH: 8, C2C_ACK: 9, C2G_SEND: 10, C2G_SEND_RSP: 11, C2G_PUSH: 12, C2G_ACK: 13,
  PULL: 14, PULL_RSP: 15, KICK: 16, ERROR: 17, GROUP_CREATE: 18, GROUP_CREATE_RSP: 19,
  GROUP_ADD: 20, GROUP_ADD_RSP: 21, GROUP_LIST: 24, GROUP_LIST_RSP: 25, HISTORY: 26,
  HISTORY_RSP: 27, SERVER_PUSH: 28, SERVER_ACK: 29, CONV_LIST: 30, CONV_LIST_RSP: 31,
  MARK_READ: 32, MARK_READ_RSP: 33, READ_SYNC: 34, READ_RECEIPT: 35, READ_BY: 36,
  READ_BY_RSP: 37, DELIVERED: 38, MSG_CHANGE: 44, MSG_CHANGE_RSP: 45, MSG_CHANGED: 46, TYPING_REQ: 48,
  TYPING: 49, PRESENCE_REQ: 50, PRESENCE_RSP: 51, PRESENCE: 52,
};
export const BODY = {
  2: 'AuthRequest', 3: 'AuthResponse', 6: 'C2CSendRequest', 7: 'SendResponse',
  8: 'C2CPushRequest', 9: 'PushAck', 10: 'C2GSendRequest', 11: 'SendResponse',
  12: 'C2GPushRequest', 13: 'PushAck', 14: 'PullRequest', 15: 'PullResponse', 16: 'Kick',
  17: 'Error', 18: 'GroupRequest', 19: 'GroupResponse', 20: 'GroupRequest',
  21: 'GroupResponse', 24: 'GroupRequest', 25: 'GroupResponse', 26: 'HistoryRequest',
  27: 'HistoryResponse', 28: 'ServerPush', 29: 'PushAck', 30: 'ConvListRequest',
  31: 'ConvListResponse', 32: 'MarkReadRequest', 33: 'ReadState', 34: 'ReadState',
  35: 'ReadReceipt', 36: 'ReadByRequest', 37: 'ReadByResponse', 38: 'DeliveryReceipt', 44: 'MsgChangeRequest',
  45: 'MsgChanged', 46: 'MsgChanged', 48: 'TypingRequest', 49: 'Typing',
  50: 'PresenceRequest', 51: 'PresenceResponse', 52: 'Presence',
};

// Capability bits of AuthRequest.caps (spec: include/mim/common.h).
export const CAP = { BATCH: 1, READ: 8, CHANGE: 16, TYPING: 32, PRESENCE: 64, LARGE: 128 };

const utf8enc = new TextEncoder();
// fatal: the server sends only valid UTF-8 (§3); anything else is a
// protocol error of that frame, not text to show
const utf8dec = new TextDecoder('utf-8', { fatal: true });

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

function pushVarint(out, v) {
  let x = BigInt.asUintN(64, BigInt(v)); // negatives: 10-byte two's complement
  while (x >= 0x80n) {
    out.push(Number(x & 0x7fn) | 0x80);
    x >>= 7n;
  }
  out.push(Number(x));
}

function isZero(v) {
  return v === undefined || v === null || v === 0 || v === 0n || v === '' || v === false;
}

// encode(name, obj) -> Uint8Array. Zero values are left out (proto3), except
// for fields named in obj.$present (PullRequest.after_seq: its presence
// matters, §3).
export function encode(name, obj) {
  const out = [];
  for (const [num, field, type] of SCHEMA[name]) {
    const v = obj[field];
    const present = obj.$present && obj.$present.includes(field);
    if (isZero(v) && !present) continue;
    const repeated = type[0] === '*';
    const t = repeated ? type.slice(1) : type;
    for (const item of repeated ? v : [v]) writeField(out, num, t, item ?? 0);
  }
  return Uint8Array.from(out);
}

function writeField(out, num, t, v) {
  if (t === 'string' || t === 'bytes' || SCHEMA[t]) {
    const b = t === 'string' ? utf8enc.encode(v) : SCHEMA[t] ? encode(t, v) : v;
    pushVarint(out, (num << 3) | 2);
    pushVarint(out, b.length);
    for (const x of b) out.push(x);
  } else {
    pushVarint(out, num << 3);
    pushVarint(out, t === 'bool' ? (v ? 1 : 0) : v);
  }
}

class Reader {
  constructor(buf) { this.buf = buf; this.pos = 0; }
  varint() {
    let x = 0n, shift = 0n;
    for (;;) {
      if (this.pos >= this.buf.length || shift > 63n) throw new Error('bad varint');
      const b = this.buf[this.pos++];
      x |= BigInt(b & 0x7f) << shift;
      if (b < 0x80) return x;
      shift += 7n;
    }
  }
  bytes() {
    const n = Number(this.varint());
    if (this.pos + n > this.buf.length) throw new Error('truncated field');
    const b = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return b;
  }
  skip(wire) {
    if (wire === 0) this.varint();
    else if (wire === 1) this.pos += 8;
    else if (wire === 2) this.bytes();
    else if (wire === 5) this.pos += 4;
    else throw new Error('bad wire type ' + wire);
    if (this.pos > this.buf.length) throw new Error('truncated field');
  }
}

function toNumber(x) { return x <= MAX_SAFE && x >= -MAX_SAFE ? Number(x) : x; }

function scalar(t, x) {
  switch (t) {
    case 'bool': return x !== 0n;
    case 'int32': return Number(BigInt.asIntN(32, x));
    case 'uint32': return Number(BigInt.asUintN(32, x));
    case 'int64': return toNumber(BigInt.asIntN(64, x));
    default: return toNumber(x); // uint64
  }
}

// decode(name, bytes) -> object with every schema field (zero when absent).
// Throws on a malformed body.
export function decode(name, buf) {
  const fields = SCHEMA[name];
  const obj = {};
  const byNum = new Map();
  for (const [num, field, type] of fields) {
    byNum.set(num, [field, type]);
    const rep = type[0] === '*';
    const t = rep ? type.slice(1) : type;
    obj[field] = rep ? [] : t === 'string' ? '' : t === 'bool' ? false : SCHEMA[t] ? null : 0;
  }
  const r = new Reader(buf);
  while (r.pos < buf.length) {
    const key = Number(r.varint());
    const num = key >>> 3, wire = key & 7;
    const f = byNum.get(num);
    if (!f) { r.skip(wire); continue; }
    const [field, type] = f;
    const rep = type[0] === '*';
    const t = rep ? type.slice(1) : type;
    let v;
    if (t === 'string' || t === 'bytes' || SCHEMA[t]) {
      if (wire !== 2) throw new Error(`${name}.${field}: wire type ${wire}`);
      const b = r.bytes();
      v = t === 'string' ? utf8dec.decode(b) : SCHEMA[t] ? decode(t, b) : b.slice();
    } else {
      if (wire !== 0) throw new Error(`${name}.${field}: wire type ${wire}`);
      v = scalar(t, r.varint());
    }
    if (rep) obj[field].push(v); else obj[field] = v;
  }
  return obj;
}

// frame(cmd, name, obj) -> one frame, header + body.
export function frame(cmd, name, obj) {
  const body = name ? encode(name, obj) : new Uint8Array(0);
  const out = new Uint8Array(12 + body.length);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, 0); // version 0
  dv.setUint32(4, cmd);
  dv.setUint32(8, body.length);
  out.set(body, 12);
  return out;
}

// frames(ArrayBuffer) -> [{cmd, msg}]: every frame of one websocket message
// (one without MIM_CAP_BATCH, one or more with it, §1). A message that is
// not whole frames throws: the caller treats it as a broken connection.
export function frames(ab) {
  const buf = new Uint8Array(ab);
  const dv = new DataView(ab);
  const out = [];
  let pos = 0;
  while (pos < buf.length) {
    if (pos + 12 > buf.length) throw new Error('truncated frame header');
    const cmd = dv.getUint32(pos + 4);
    const len = dv.getUint32(pos + 8);
    if (pos + 12 + len > buf.length) throw new Error('truncated frame');
    const body = buf.subarray(pos + 12, pos + 12 + len);
    const name = BODY[cmd];
    out.push({ cmd, msg: name ? decode(name, body) : {} });
    pos += 12 + len;
  }
  if (out.length === 0) throw new Error('empty message');
  return out;
}
