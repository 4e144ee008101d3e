/* Signal handling for the daemons: the handler only records the signal; the
 * event loop notices it (mosquitto's way). */
#ifndef MIMD_SIGNALS_H
#define MIMD_SIGNALS_H

#include <signal.h>

/* Set to the signal number by SIGINT/SIGTERM; 0 until then. */
extern volatile sig_atomic_t mimd_stop_signal;

/* Set to 1 by SIGHUP (a reload request); the loop clears it when it starts
 * the reload, so a SIGHUP during a reload asks for one more. */
extern volatile sig_atomic_t mimd_reload_signal;

/* Installs SIGINT/SIGTERM and SIGHUP handlers (no SA_RESTART) and ignores SIGPIPE
 * (a peer vanishing mid-write is an EPIPE, not a death). `wake` (may be
 * NULL) is called from the handler to interrupt the loop's wait; it must be
 * async-signal-safe (lws_cancel_service writes to a pipe). */
void mimd_signals_install(void (*wake)(void));

#endif
