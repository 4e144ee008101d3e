// web/proto.js without a browser: the example frame of docs/protocol.md §2,
// 64-bit values, unknown fields, batched and broken messages.
//   node proto-test.mjs PATH/TO/web/proto.js
import assert from 'node:assert/strict';
import { pathToFileURL } from 'node:url';

const P = await import(pathToFileURL(process.argv[2]).href);
const hex = (b) => Buffer.from(b).toString('hex');

// §2's example AuthRequest, byte for byte
const f = P.frame(2, 'AuthRequest', { token: 'v1.1700000000.OEY-L7klSketoqYzahZhFmXxdiNJARdeL4pOK-oxmto',
  uid: 'alice', ts: 1699999990000, seq: 1, device: 'phone', caps: 1 });
assert.equal(hex(f), '000000000000000200000054' +
  '0a3976312e313730303030303030302e4f45592d4c376b6c536b65746f71597a61685a68466d587864694e4a415264654c34704f4b2d6f786d746f' +
  '1205616c69636518f08195ffbc3120012a0570686f6e653001');
// a heartbeat is the bare header
assert.equal(hex(P.frame(0, null, {})), '000000000000000000000000');

// 64-bit: exact Numbers up to 2^53, BigInts above, negatives as int64
const big = 2n ** 60n + 1n;
let m = P.decode('PullMsg', P.encode('PullMsg', { msg_id: big, conv_seq: 2 ** 53 - 1, send_time: -5 }));
assert.equal(m.msg_id, big);
assert.equal(m.conv_seq, 2 ** 53 - 1);
assert.equal(m.send_time, -5);
assert.equal(hex(P.encode('MarkReadRequest', { conv_seq: (1n << 64n) - 1n })), '18ffffffffffffffffff01');

// presence: after_seq 0 is sent when asked, zero values are left out otherwise
assert.equal(hex(P.encode('PullRequest', { after_seq: 0, $present: ['after_seq'] })), '3000');
assert.equal(hex(P.encode('PullRequest', { after_seq: 0 })), '');

// unknown fields of every wire type are skipped; repeated and nested
const body = Uint8Array.from([0x0a, 0x02, 0x68, 0x69, 0x98, 0x06, 0x07, 0xa1, 0x06, 1, 2, 3, 4, 5, 6, 7, 8,
  0xad, 0x06, 1, 2, 3, 4, 0xaa, 0x06, 0x01, 0x00, 0x2a, 0x01, 0x78, 0x2a, 0x01, 0x79, 0x30, 0x01]);
m = P.decode('GroupResponse', body);
assert.equal(m.group, 'hi');
assert.deepEqual(m.groups, ['x', 'y']);
assert.equal(m.has_more, true);
m = P.decode('ConvListResponse', P.encode('ConvListResponse', { convs: [{ peer: 'bob', unread: 3 }, { group: 'g' }] }));
assert.equal(m.convs.length, 2);
assert.equal(m.convs[0].unread, 3);
assert.equal(m.convs[1].group, 'g');

// several frames in one message (MIM_CAP_BATCH); broken messages throw
const two = new Uint8Array([...P.frame(1, null, {}), ...P.frame(17, 'Error', { code: 1004, msg: 'no' })]);
const fs = P.frames(two.buffer);
assert.deepEqual(fs.map((x) => x.cmd), [1, 17]);
assert.equal(fs[1].msg.code, 1004);
assert.throws(() => P.frames(two.slice(0, two.length - 1).buffer), /truncated/);
// a header that promises more body than the message holds
assert.throws(() => P.frames(Uint8Array.from([0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 5]).buffer), /truncated frame$/);
assert.throws(() => P.frames(Uint8Array.from([0, 0, 0, 0, 0, 0, 0, 1, 0, 0]).buffer), /truncated frame header/);
assert.throws(() => P.frames(new ArrayBuffer(0)), /empty/);
assert.throws(() => P.decode('Error', Uint8Array.from([0x12, 0x01, 0xff])), TypeError); // bad UTF-8
assert.throws(() => P.decode('Error', Uint8Array.from([0x12, 0x05, 0x61])), /truncated/);
assert.throws(() => P.decode('Error', Uint8Array.from([0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01])), /varint/);
console.log('ok proto');
