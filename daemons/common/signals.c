#include "signals.h"

#include <string.h>

volatile sig_atomic_t mimd_stop_signal;
volatile sig_atomic_t mimd_reload_signal;
static void (*wake_fn)(void);

static void on_signal(int sig) {
  mimd_stop_signal = sig;
  if (wake_fn != NULL)
    wake_fn();
}

static void on_hangup(int sig) {
  (void)sig;
  mimd_reload_signal = 1;
  if (wake_fn != NULL)
    wake_fn();
}

void mimd_signals_install(void (*wake)(void)) {
  wake_fn = wake;
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  /* SIGHUP used to terminate (its default action); now it asks for a
   * reload of what can change while running (docs/operations.md) */
  sa.sa_handler = on_hangup;
  sigaction(SIGHUP, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);
}
