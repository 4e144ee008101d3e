/* libmim — sessions and routing: which (uid, device) is on which
 * (gateway, connection), and the fan-out of a delivery to every connection
 * of its receivers, grouped per gateway.
 *
 * A route is removed only by the connection that owns it
 * (compare-and-delete), so a stale connection's close never erases the route
 * of the newer login that replaced it. Not thread-safe: one owner.
 */
#ifndef MIM_SESSION_H
#define MIM_SESSION_H

#include <mim/codec.h>
#include <mim/common.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A connection, as the logic names it: the gateway handle the daemon gave
 * the gateway's RPC link, and the connection id that gateway chose. */
struct mim_conn_ref {
  uint32_t gateway;
  uint64_t conn_id;
};

/* A bound session. Strings are owned by the table and valid until the route
 * is removed. */
struct mim_route {
  struct mim_conn_ref conn;
  const char *uid;
  const char *device;
  uint32_t caps;
};

struct mim_sessions;

/* Errors: -ENOMEM. */
MIM_API int mim_sessions_create(struct mim_sessions **out);

/* NULL is a no-op. */
MIM_API void mim_sessions_destroy(struct mim_sessions *s);

/* At most `max` routes (devices) per uid from now on; 0 (the default) = no
 * limit. Routes already bound stay. */
MIM_API void mim_sessions_set_user_max(struct mim_sessions *s, size_t max);

/* Binds (`uid`, `device`) to `conn` (strings borrowed, copied). If that
 * (uid, device) was bound to another connection, the old route is replaced:
 * `*replaced` (may be NULL) gets the old connection and `*did_replace` (may
 * be NULL) true; the caller kicks it. Errors: -EEXIST `conn` already holds a
 * route (unbind it first); -EINVAL invalid id; -MIM_ERR_TOO_MANY_DEVICES
 * `uid` already has the most routes mim_sessions_set_user_max() allows and
 * `device` is not one of them; -ENOMEM. */
MIM_API int mim_sessions_bind(struct mim_sessions *s, const char *uid,
                              const char *device, struct mim_conn_ref conn,
                              uint32_t caps, struct mim_conn_ref *replaced,
                              bool *did_replace);

/* Removes the route owned by `conn`. Errors: -ENOENT `conn` owns none (it
 * never logged in, or a newer login replaced it). */
MIM_API int mim_sessions_unbind(struct mim_sessions *s,
                                struct mim_conn_ref conn);

/* The route owned by `conn`, borrowed until it is removed.
 * Errors: -ENOENT. */
MIM_API int mim_sessions_lookup(const struct mim_sessions *s,
                                struct mim_conn_ref conn,
                                struct mim_route *out);

/* Removes every route of `gateway` (its link went down). `fn` (may be NULL)
 * sees each route, borrowed for the call, before it goes. Returns how many
 * were removed. */
MIM_API size_t mim_sessions_unbind_gateway(
    struct mim_sessions *s, uint32_t gateway,
    void (*fn)(void *user, const struct mim_route *r), void *user);

/* Calls `fn` for each route of `uid` (borrowed for the call); `fn` must not
 * change the table. Returns how many routes `uid` has. */
MIM_API size_t mim_sessions_foreach_device(
    const struct mim_sessions *s, const char *uid,
    void (*fn)(void *user, const struct mim_route *r), void *user);

/* Number of routes. */
MIM_API size_t mim_sessions_count(const struct mim_sessions *s);

/* ---- fan-out ---- */

/* Collects delivery targets, grouped by gateway, for one packet. */
struct mim_fanout;

MIM_API int mim_fanout_create(struct mim_fanout **out);
MIM_API void mim_fanout_destroy(struct mim_fanout *f);

/* Forgets every target; keeps memory for reuse. */
MIM_API void mim_fanout_reset(struct mim_fanout *f);

/* Adds every connection of `uid` with `inbox_seq`, except `exclude` (NULL:
 * none; the sending connection, whose reply already carries the message).
 * Returns the number of connections added (>= 0) or -ENOMEM. */
MIM_API int mim_fanout_add_user(struct mim_fanout *f,
                                const struct mim_sessions *s, const char *uid,
                                uint64_t inbox_seq,
                                const struct mim_conn_ref *exclude);

/* Adds one connection. Errors: -ENOMEM. */
MIM_API int mim_fanout_add_conn(struct mim_fanout *f, struct mim_conn_ref conn,
                                uint64_t inbox_seq);

/* Number of gateways with at least one target. */
MIM_API size_t mim_fanout_gateway_count(const struct mim_fanout *f);

/* The `i`-th gateway's targets, in the order added; borrowed until the next
 * change of `f`. Errors: -EINVAL i out of range. */
MIM_API int mim_fanout_gateway(const struct mim_fanout *f, size_t i,
                               uint32_t *gateway,
                               const struct mim_rpc_target **targets,
                               size_t *n_targets);

#ifdef __cplusplus
}
#endif

#endif /* MIM_SESSION_H */
