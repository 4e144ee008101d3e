/* The codec's field tables and what the encoders, decoders and the test
 * support's protobuf-c reference (tests/support/reference.c) share.
 * Private: never installed.
 *
 * Each protobuf message has a list of rows, one per field, naming the
 * protobuf field and the member of the flat struct (struct mim_packet,
 * struct mim_rpc, their element structs) it maps onto. */
#ifndef MIM_CODEC_TABLE_H
#define MIM_CODEC_TABLE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#include <mim/codec.h>
#include <mim/rpc.h>

#include "client.pb-c.h"
#include "rpc.pb-c.h"

/* How a protobuf field converts to a flat-struct member. */
enum kind {
  K_IGNORE,  /* protobuf field with no flat member: read and dropped */
  K_STR,     /* string <-> const char * ("" when absent after decode) */
  K_I64,     /* int64 <-> int64_t */
  K_I32,     /* int32 <-> int32_t */
  K_U32,     /* uint32 <-> uint32_t */
  K_U64,     /* uint64 <-> uint64_t */
  K_BOOL,    /* bool <-> bool */
  K_MSG_ID,  /* int64 <-> uint64_t in 0..MIM_MSG_ID_MAX */
  K_OPT_U64, /* uint64 <-> uint64_t + bool presence member (aux) */
  K_BYTES,   /* bytes <-> const uint8_t * + size_t length member (aux) */
  K_STRS,    /* repeated string <-> const char *const * + size_t count */
  K_MSGS,    /* repeated message <-> array of flat structs + size_t count */
};

/* The C type of a kind's member (CTYPE_) and of its aux member (ATYPE_). */
#define CTYPE_STR const char *
#define CTYPE_I64 int64_t
#define CTYPE_I32 int32_t
#define CTYPE_U32 uint32_t
#define CTYPE_U64 uint64_t
#define CTYPE_BOOL bool
#define CTYPE_MSG_ID uint64_t
#define CTYPE_OPT_U64 uint64_t
#define CTYPE_BYTES const uint8_t *
#define CTYPE_STRS const char *const *
#define ATYPE_OPT_U64 bool
#define ATYPE_BYTES size_t
#define ATYPE_STRS size_t

struct msg_map;

struct row {
  const char *name; /* protobuf field name */
  enum kind kind;
  size_t off;       /* flat member */
  size_t aux;       /* K_OPT_U64, K_BYTES, K_STRS, K_MSGS: second member */
  const struct msg_map *sub; /* K_MSGS: how each element maps */
};

/* A row's field descriptor, looked up by name once and then kept: the
 * by-name search (a binary search of strcmps) would otherwise run on every
 * field of every encode and decode (docs/benchmarks.md). Atomic (relaxed) because
 * several threads may share the codec; they all store the same pointer. */
typedef _Atomic(const ProtobufCFieldDescriptor *) field_cache;

/* What the wire codec needs of a row, resolved once for all maps (see
 * wire_index_all): its field number and the wire types protobuf-c accepts
 * for it (a bit per type). */
struct row_wire {
  uint32_t id;
  uint8_t wts;
};

/* Field numbers below this find their row by table; larger ones by search. */
#define ID_DIRECT 32

struct msg_map {
  const ProtobufCMessageDescriptor *desc; /* NULL: the body is empty */
  const struct row *rows;
  size_t n_rows;
  size_t flat_size; /* sizeof the flat struct: the stride of K_MSGS arrays */
  field_cache *fds; /* n_rows entries, filled on first use */
  struct row_wire *rw; /* n_rows entries, filled by wire_index_all() */
  uint8_t *by_id;      /* ID_DIRECT entries: row index + 1, or 0 */
};

/* offsetof(FLAT, m), which only compiles when member `m` has type `type`:
 * a row whose kind does not match its member is a build error, not a
 * silently corrupted field. FLAT is #defined before each group of tables. */
#define OFF(m, type) _Generic(((FLAT *)0)->m, type: offsetof(FLAT, m))

#define F(kind, name, m) {name, K_##kind, OFF(m, CTYPE_##kind), 0, NULL}
#define F2(kind, name, m, aux)                                                 \
  {name, K_##kind, OFF(m, CTYPE_##kind), OFF(aux, ATYPE_##kind), NULL}
#define MSGS(name, m, n, elem, submap)                                         \
  {name, K_MSGS, OFF(m, const elem *), OFF(n, size_t), submap}
#define IGNORE(name) {name, K_IGNORE, 0, 0, NULL}

/* The field cache is a file-scope compound literal: static and writable. */
#define MAP(pbname, rows, flat)                                                \
  {&mimpb__##pbname##__descriptor, rows, MIM_ARRAY_SIZE(rows), sizeof(flat), \
   (field_cache[MIM_ARRAY_SIZE(rows)]){NULL},                                  \
   (struct row_wire[MIM_ARRAY_SIZE(rows)]){{0, 0}}, (uint8_t[ID_DIRECT]){0}}

/* ---- allocation ---- */

/* A list of blocks freed together: the protobuf-c message tree built for
 * one encode, or the flat arrays (items, targets, sessions) of one decode. */
struct arena {
  struct block *head;
};

struct block {
  struct block *next;
  max_align_t data[];
};

/* What a decoded packet's priv_ points at. */
struct decoded {
  struct arena arena;
  /* What a reference decode (tests/support/reference.c) made the flat
   * strings point into, and how to free it; NULL for the direct decoder. */
  void *ref;
  void (*ref_free)(void *ref);
};

#define AT(base, off) ((char *)(base) + (off))
#define CAT(base, off) ((const char *)(base) + (off))

/* The map of client command `cmd` / RPC command `cmd`; NULL if unknown. */
const struct msg_map *mim__codec_client_map(uint32_t cmd);
const struct msg_map *mim__codec_rpc_map(uint32_t cmd);

/* The protobuf-c descriptor of `row`'s field (looked up once, then kept). */
const ProtobufCFieldDescriptor *mim__codec_field_of(const struct msg_map *map,
                                                    const struct row *row);

/* Whether a string field of `body` holds a NUL byte (malformed for us). */
bool mim__codec_string_has_nul(const struct msg_map *map, const uint8_t *body,
                               size_t len);

/* `n` * `size` zeroed bytes in `a`, or NULL on overflow or out of memory. */
void *mim__codec_arena_alloc(struct arena *a, size_t n, size_t size);
void mim__codec_arena_free(struct arena *a);
void mim__codec_decoded_free(struct decoded *dec);

/* A decoder of a body with `map` into `flat`; on success *priv (a struct
 * decoded) owns what `flat` points into. */
typedef int decoder_fn(const struct msg_map *map, const uint8_t *body,
                       size_t len, void *flat, void **priv);

/* mim_packet_decode() / mim_rpc_decode() through decoder `fn`. */
int mim__codec_packet_decode_with(decoder_fn *fn, struct mim_packet *p,
                                  uint32_t cmd, const uint8_t *body,
                                  size_t len);
int mim__codec_rpc_decode_with(decoder_fn *fn, struct mim_rpc *r, uint32_t cmd,
                               const uint8_t *body, size_t len);

/* protobuf wire types */
enum { WT_VARINT = 0, WT_I64 = 1, WT_LEN = 2, WT_I32 = 5 };

/* decode.c */
int mim__codec_decode(const struct msg_map *map, const uint8_t *body, size_t len,
                      void *flat, void **priv);

/* encode.c */
int mim__codec_encode_body(const struct msg_map *map, const void *flat,
                           uint8_t *buf, size_t cap, size_t *len);
int mim__codec_encode_frame(const struct msg_map *map, uint32_t cmd,
                            const void *flat, uint8_t *buf, size_t cap,
                            size_t *len);

/* table.c */
ptrdiff_t mim__codec_row_for(const struct msg_map *map, uint32_t id);
void mim__codec_wire_ready(void);

#endif /* MIM_CODEC_TABLE_H */
