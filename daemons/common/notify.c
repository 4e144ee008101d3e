#include "notify.h"

#ifdef MIMD_HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#include <time.h>

/* sd_notify() returns <= 0 when there is no NOTIFY_SOCKET or the send
 * failed; a daemon runs the same either way, so the result is ignored. */

void mimd_notify_ready(const char *status) {
  (void)sd_notifyf(0, "READY=1\nSTATUS=%s", status != NULL ? status : "ready");
}

void mimd_notify_reloading(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  unsigned long long usec =
      (unsigned long long)ts.tv_sec * 1000000ULL +
      (unsigned long long)ts.tv_nsec / 1000ULL;
  (void)sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=reloading",
                   usec);
}

void mimd_notify_stopping(void) {
  (void)sd_notify(0, "STOPPING=1\nSTATUS=stopping");
}

void mimd_notify_status(const char *status) {
  (void)sd_notifyf(0, "STATUS=%s", status);
}

#else

void mimd_notify_ready(const char *status) { (void)status; }
void mimd_notify_reloading(void) {}
void mimd_notify_stopping(void) {}
void mimd_notify_status(const char *status) { (void)status; }

#endif
