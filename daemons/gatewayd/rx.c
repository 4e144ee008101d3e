/* Websocket message -> frames.
 *
 * lws hands a message over in pieces of at most the protocol's
 * rx_buffer_size. Whole frames inside a piece are used in place; a frame
 * that spans pieces is reassembled into a buffer that grows (doubling, up to
 * the announced size) as its bytes arrive: a header is only a claim, and a
 * client that announces 64 KiB and then sends nothing must cost nothing. A
 * header above max_frame is refused before anything is buffered, and
 * ops->screen decides from the header alone whether the body is
 * wanted at all (a frame refused unread has its body dropped as it comes).
 *
 * Without MIM_CAP_BATCH a message must be exactly one frame: its frame is
 * handled when the message ends, and any byte after it is an error. With
 * the capability frames are handled as soon as each is complete, so a long
 * message never needs more than one frame's worth of buffer.
 *
 * A TCP stream is one endless message whose frames are always handled as
 * soon as each is complete: the same reassembly, pieces being whatever one
 * read returned (a frame may span any number of reads, a read may hold many
 * frames). */
#include "rx.h"

#include "gateway.h"
#include "tx.h"

#include <log.h>
#include <stdlib.h>
#include <string.h>

void gw_rx_reset(struct client *c) {
  free(c->body);
  c->body = NULL;
  c->body_len = c->body_got = c->body_cap = 0;
  c->hdr_len = 0;
  c->rx_complete = false;
  c->rx_skip = false;
}

/* The first allocation of a reassembled body: one lws piece and some. */
#define BODY_MIN 1024

/* Makes room for `need` body bytes: at least double the current buffer,
 * never more than the frame announced, so the copies stay linear in the
 * frame's size. Errors: -ENOMEM. */
static int body_reserve(struct client *c, uint32_t need) {
  if (need <= c->body_cap)
    return 0;
  uint64_t cap = c->body_cap ? (uint64_t)c->body_cap * 2 : BODY_MIN;
  if (cap < need)
    cap = need;
  if (cap > c->body_len)
    cap = c->body_len;
  uint8_t *b = realloc(c->body, (size_t)cap);
  if (b == NULL)
    return -ENOMEM;
  c->body = b;
  c->body_cap = (uint32_t)cap;
  return 0;
}

/* The Error (naming the frame's cmd when its header was read) goes out
 * through the send queue, then the close frame; what the client sends
 * meanwhile is dropped (gw_rx() sees `closing`). */
static void reject(struct gw *gw, struct client *c, int err, uint32_t cmd,
                   uint16_t code, const char *why) {
  mimd_debug("conn %llu: %s", (unsigned long long)c->id, why);
  gw_rx_reset(c);
  gw_close_with_error(gw, c, err, cmd, code, why);
}

/* The cmd of the frame being reassembled, 0 before its header is in. */
static uint32_t buffered_cmd(const struct client *c) {
  struct mim_header h = {0};
  if (c->hdr_len == MIM_HEADER_SIZE)
    mim_header_decode(c->hdr, &h);
  return h.cmd;
}

static void too_big(struct gw *gw, struct client *c, uint32_t cmd) {
  reject(gw, c, -MIM_ERR_FRAME_TOO_BIG, cmd, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE,
         "frame larger than the maximum");
}

/* A websocket message that is not one frame (or, batching, whole frames):
 * the stream cannot be trusted past it, so the connection ends. Said with
 * Kick PROTOCOL, never with an Error MALFORMED, which answers one request
 * and leaves the connection open (docs/protocol.md §1). */
static void malformed(struct gw *gw, struct client *c, const char *why) {
  mimd_debug("conn %llu: %s", (unsigned long long)c->id, why);
  gw_rx_reset(c);
  gw_send_kick(gw, c, MIM_KICK_PROTOCOL, why);
  gw_close(gw, c, LWS_CLOSE_STATUS_INVALID_PAYLOAD, why);
}

static void out_of_memory(struct gw *gw, struct client *c, uint32_t cmd) {
  reject(gw, c, -ENOMEM, cmd, LWS_CLOSE_STATUS_UNEXPECTED_CONDITION,
         "out of memory");
}

/* Hands the buffered frame on and forgets it. */
static void deliver_buffered(struct gw *gw, const struct gw_rx_ops *ops,
                             struct client *c) {
  struct mim_header h;
  mim_header_decode(c->hdr, &h);
  uint8_t *body = c->body;
  bool skip = c->rx_skip;
  c->body = NULL;
  gw_rx_reset(c);
  c->rx_frames++;
  /* an empty body is never allocated: hand over a pointer all the same */
  static const uint8_t none[1];
  ops->frame(gw, c, &h, skip ? NULL : body ? body : none);
  free(body);
}

/* Copies a frame that lies whole in lws's buffer into ours, to be handled
 * when its message ends (single-frame clients only). */
static int keep_frame(struct client *c, const uint8_t *frame,
                      const struct mim_header *h, bool skip) {
  memcpy(c->hdr, frame, MIM_HEADER_SIZE);
  c->hdr_len = MIM_HEADER_SIZE;
  c->rx_skip = skip;
  if (h->body_len > 0 && !skip) {
    c->body = malloc(h->body_len);
    if (c->body == NULL)
      return -ENOMEM;
    memcpy(c->body, frame + MIM_HEADER_SIZE, h->body_len);
    c->body_cap = h->body_len;
  }
  c->body_len = c->body_got = h->body_len;
  c->rx_complete = true;
  return 0;
}

/* Takes header bytes into c->hdr; once all 12 are in, checks the size and
 * screens the frame; nothing is allocated yet. Returns bytes used, or -1
 * after rejecting. */
static long take_header(struct gw *gw, const struct gw_rx_ops *ops,
                        struct client *c, const uint8_t *in,
                        size_t len) {
  size_t n = MIM_HEADER_SIZE - c->hdr_len;
  if (n > len)
    n = len;
  memcpy(c->hdr + c->hdr_len, in, n);
  c->hdr_len = (uint8_t)(c->hdr_len + n);
  if (c->hdr_len < MIM_HEADER_SIZE)
    return (long)n;
  struct mim_header h;
  mim_header_decode(c->hdr, &h);
  if (h.body_len > (uint64_t)gw->cfg->max_frame) {
    too_big(gw, c, h.cmd);
    return -1;
  }
  enum gw_screen sc = ops->screen(gw, c, &h);
  if (sc == GW_CLOSED) {
    gw_rx_reset(c);
    return -1;
  }
  c->rx_skip = sc == GW_SKIP;
  c->body_len = h.body_len;
  c->body_got = 0;
  return (long)n;
}

void gw_rx(struct gw *gw, const struct gw_rx_ops *ops, struct client *c,
           const uint8_t *in, size_t len,
           bool first, bool final) {
  /* once closing, input is read and dropped, not left unread: unread data
   * at close() makes the kernel send a reset, which can destroy the Error
   * and close frame before the peer has read them */
  if (c->closing)
    return;
  if (first) {
    gw_rx_reset(c);
    c->rx_frames = 0;
  }
  /* a TCP stream has no messages: frames come back to back whatever the
   * capabilities, each handled as soon as it is complete */
  const bool batch =
      c->transport == GW_T_TCP || (c->authed && (c->caps & MIM_CAP_BATCH));
  const size_t max = (size_t)gw->cfg->max_frame;

  while (len > 0 && !c->closing) {
    if (c->rx_complete || (!batch && c->rx_frames > 0)) {
      malformed(gw, c, "bytes after the frame in one message");
      return;
    }

    /* fast path: a whole frame in place */
    if (c->hdr_len == 0) {
      struct mim_frame f;
      size_t used;
      int rc = mim_frame_decode(in, len, max, &f, &used);
      if (rc == -MIM_ERR_FRAME_TOO_BIG) {
        mim_header_decode(in, &f.header); /* reported after 12 bytes */
        too_big(gw, c, f.header.cmd);
        return;
      }
      if (rc == 0) {
        if (!batch && used < len) {
          malformed(gw, c, "bytes after the frame in one message");
          return;
        }
        enum gw_screen sc = ops->screen(gw, c, &f.header);
        if (sc == GW_CLOSED)
          return;
        if (!batch && !final) {
          if (keep_frame(c, in, &f.header, sc == GW_SKIP) < 0)
            out_of_memory(gw, c, f.header.cmd);
          return;
        }
        c->rx_frames++;
        ops->frame(gw, c, &f.header,
                           sc == GW_SKIP ? NULL : f.body);
        in += used;
        len -= used;
        continue;
      }
      /* -EAGAIN: the frame continues in the next piece */
    }

    if (c->hdr_len < MIM_HEADER_SIZE) {
      long n = take_header(gw, ops, c, in, len);
      if (n < 0)
        return;
      in += n;
      len -= (size_t)n;
    }
    if (c->hdr_len == MIM_HEADER_SIZE) {
      size_t n = c->body_len - c->body_got;
      if (n > len)
        n = len;
      if (n > 0 && !c->rx_skip) {
        if (body_reserve(c, c->body_got + (uint32_t)n) < 0) {
          out_of_memory(gw, c, buffered_cmd(c));
          return;
        }
        memcpy(c->body + c->body_got, in, n);
      }
      c->body_got += (uint32_t)n;
      in += n;
      len -= n;
      if (c->body_got == c->body_len) {
        if (!batch && len > 0) {
          malformed(gw, c, "bytes after the frame in one message");
          return;
        }
        if (!batch && !final)
          c->rx_complete = true; /* wait for the end of the message */
        else
          deliver_buffered(gw, ops, c);
      }
    }
  }

  if (!final || c->closing)
    return;
  if (c->rx_complete)
    deliver_buffered(gw, ops, c);
  else if (c->hdr_len > 0)
    malformed(gw, c, "truncated frame");
  else if (c->rx_frames == 0)
    malformed(gw, c, "empty message");
}
