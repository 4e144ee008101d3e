/* gatewayd: the websocket gateway of libmim. Clients speak the seed's
 * framed protocol over websocket (docs/protocol.md); every frame is relayed
 * to logicd over the internal RPC (docs/rpc.md) and what logicd delivers is
 * written back. gateway.h maps the modules; gateway.c wires them.
 *
 * main: settings, then start (context, listener, logicd link), run until
 * a stop has drained, tear down. */
#include "gateway.h"

#include <malloc.h>

#include <log.h>
#include <signals.h>

/* A push to a large group's followers allocates one queued frame per
 * connection and frees them all once written, every loop turn: with
 * glibc's default trim threshold (128 KiB) the heap top went back to the
 * kernel after each turn and came back page fault by page fault, 28% of
 * gatewayd's time (docs/benchmarks.md, "Large groups"). Keeping up to
 * 64 MiB of freed top (and growing it 16 MiB at a time) costs that much
 * resident memory after a burst at most, never per connection. */
static void heap_tune(void) {
  mallopt(M_TRIM_THRESHOLD, 64 * 1024 * 1024);
  mallopt(M_TOP_PAD, 16 * 1024 * 1024);
}

int main(int argc, char **argv) {
  heap_tune();
  struct gw_config cfg = {0};
  int rc = gw_config_load(&cfg, argc, argv);
  if (rc != 0) {
    gw_config_free(&cfg);
    return rc > 0 ? 0 : 2;
  }
  mimd_log_init("gatewayd", cfg.level);

  struct gw gw;
  int status = 1;
  if (gw_start(&gw, &cfg) == 0 && gw_run(&gw) == 0)
    status = 0;
  gw_finish(&gw);
  if (status == 0)
    mimd_info("stopped");
  gw_config_free(&cfg);
  return status;
}
