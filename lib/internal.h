/* Private helpers shared by libmim's modules. Never installed. */
#ifndef MIM_INTERNAL_H
#define MIM_INTERNAL_H

#include <mim/common.h>

#if defined(__GNUC__)
#define MIM_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define MIM_PRINTF(a, b)
#endif

/* Logs through the handler of mim_log_set_handler(); no-op without one. */
void mim__log(enum mim_log_level level, const char *fmt, ...) MIM_PRINTF(2, 3);
bool mim__log_enabled(enum mim_log_level level);

#define mim__error(...) mim__log(MIM_LOG_ERROR, __VA_ARGS__)
#define mim__warn(...) mim__log(MIM_LOG_WARN, __VA_ARGS__)
#define mim__info(...) mim__log(MIM_LOG_INFO, __VA_ARGS__)
#define mim__debug(...) mim__log(MIM_LOG_DEBUG, __VA_ARGS__)

/* Length (1..4) of the valid UTF-8 sequence that starts `s`, of which `n`
 * bytes (n >= 1) are readable; 0 when malformed: a stray continuation byte,
 * an overlong form, a surrogate, a code point above U+10FFFF or a sequence
 * cut short. The one UTF-8 rule of the library (mim_utf8_valid,
 * mim_id_valid). */
size_t mim__utf8_char_len(const uint8_t *s, size_t n);

struct mim_message_in;

/* Whether `a` and `b` are the same message for deduplication: a retry with
 * the same (sender, client_msg_id) must repeat the type, conversation kind,
 * peer, group, content and payload; anything else is
 * -MIM_ERR_DEDUP_CONFLICT. The one dedup rule, used while the first send is
 * in flight (logic) and after it is stored (LMDB backend). NULL strings
 * count as "", NULL bytes as empty. Defined in batch.c. */
bool mim__message_same(const struct mim_message_in *a,
                       const struct mim_message_in *b);

#define MIM_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#endif /* MIM_INTERNAL_H */
