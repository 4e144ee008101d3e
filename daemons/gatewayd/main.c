/* gatewayd: the websocket gateway of libmim. Clients speak the seed's
 * framed protocol over websocket (docs/protocol.md); every frame is relayed
 * to logicd over the internal RPC (docs/rpc.md) and what logicd delivers is
 * written back. gateway.h maps the modules; gateway.c wires them.
 *
 * main: settings, then start (context, listener, logicd link), run until
 * a stop has drained, tear down. */
#include "gateway.h"

#include <log.h>
#include <signals.h>

int main(int argc, char **argv) {
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
