/* Readiness and state notifications to the service manager (systemd's
 * sd_notify protocol: a datagram to $NOTIFY_SOCKET). Built on libsystemd
 * when it was found at configure time (MIMD_HAVE_SYSTEMD); without it, or
 * when the daemon was not started by a service manager (no NOTIFY_SOCKET),
 * every call does nothing. Loop thread only (not async-signal-safe). */
#ifndef MIMD_NOTIFY_H
#define MIMD_NOTIFY_H

/* READY=1 with a STATUS= line: the listeners are bound and the daemon
 * serves. Also sent after a reload (RELOADING=1 then READY=1). */
void mimd_notify_ready(const char *status);

/* RELOADING=1 (with MONOTONIC_USEC, as systemd 253's Type=notify-reload
 * wants): a SIGHUP reload began; mimd_notify_ready() ends it. */
void mimd_notify_reloading(void);

/* STOPPING=1: a graceful stop began. */
void mimd_notify_stopping(void);

/* A STATUS= line alone (what `systemctl status` shows). */
void mimd_notify_status(const char *status);

#endif
