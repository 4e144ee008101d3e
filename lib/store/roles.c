/* Group roles: the rules table every path is checked against, and the
 * notice of a management change. Backend-neutral (<mim/store.h>, "group
 * roles"); docs/protocol.md §17 prints the same table. */
#include <mim/store.h>

#include "store_internal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* Target role bits of a row cell. */
#define T_NONE (1u << MIM_ROLE_NONE)
#define T_MEM (1u << MIM_ROLE_MEMBER)
#define T_ADM (1u << MIM_ROLE_ADMIN)
#define T_OWN (1u << MIM_ROLE_OWNER)

/* THE table: rules[action][actor] = the target roles that actor may do
 * the action to (0: never). Actor columns: none, member, admin, owner,
 * operator. No member removes or mutes the owner; the owner cannot leave
 * (transfer first, or dissolve); admins manage plain members only.
 * Operators may do everything, removing the owner included (the group
 * then has no owner until an operator transfers it). */
static const unsigned rules[MIM_GA__COUNT][MIM_ROLE__COUNT] = {
    /*                   none  member  admin         owner          operator */
    [MIM_GA_ADD] =      {0,    0,      T_NONE,       T_NONE,        T_NONE},
    [MIM_GA_REMOVE] =   {0,    0,      T_MEM,        T_MEM | T_ADM, T_MEM | T_ADM | T_OWN},
    [MIM_GA_LEAVE] =    {0,    T_MEM,  T_ADM,        0,             0},
    [MIM_GA_TRANSFER] = {0,    0,      0,            T_MEM | T_ADM, T_MEM | T_ADM},
    [MIM_GA_PROMOTE] =  {0,    0,      0,            T_MEM,         T_MEM},
    [MIM_GA_DEMOTE] =   {0,    0,      0,            T_ADM,         T_ADM},
    [MIM_GA_MUTE] =     {0,    0,      T_MEM,        T_MEM | T_ADM, T_MEM | T_ADM | T_OWN},
    [MIM_GA_UNMUTE] =   {0,    0,      T_MEM,        T_MEM | T_ADM, T_MEM | T_ADM | T_OWN},
    [MIM_GA_MUTE_ALL] = {0,    0,      T_NONE,       T_NONE,        T_NONE},
    [MIM_GA_UNMUTE_ALL] = {0,  0,      T_NONE,       T_NONE,        T_NONE},
    [MIM_GA_SET_INFO] = {0,    0,      T_NONE,       T_NONE,        T_NONE},
    [MIM_GA_DISSOLVE] = {0,    0,      0,            T_NONE,        T_NONE},
    [MIM_GA_INFO] =     {0,    T_NONE, T_NONE,       T_NONE,        T_NONE},
    [MIM_GA_SEND] =     {0,    T_NONE, T_NONE,       T_NONE,        0},
    /* target: the sender's role now (none: a former member); a sender
     * recalls its own message by the window rule, not by this row */
    [MIM_GA_RECALL] =   {0,    0,      T_NONE | T_MEM, T_NONE | T_MEM | T_ADM, T_NONE | T_MEM | T_ADM | T_OWN},
};

int mim_group_rule_check(enum mim_group_role actor,
                         enum mim_group_action action,
                         enum mim_group_role target) {
  if ((unsigned)actor >= MIM_ROLE__COUNT || action < MIM_GA_ADD ||
      action >= MIM_GA__COUNT || (unsigned)target >= MIM_ROLE__COUNT)
    return -EINVAL;
  if (rules[action][actor] & (1u << target))
    return 0;
  /* someone outside the group learns nothing more than that */
  return actor == MIM_ROLE_NONE ? -MIM_ERR_NOT_MEMBER : -MIM_ERR_FORBIDDEN;
}

int mim_group_manage_notice_format(char *buf, size_t cap, size_t *len,
                                   const char *group, const char *actor,
                                   enum mim_group_action action,
                                   const char *const *members, size_t n,
                                   int64_t until, const char *name) {
  if (buf == NULL || len == NULL || group == NULL ||
      (members == NULL && n > 0))
    return -EINVAL;
  if (actor == NULL)
    actor = "";
  const char *verb;
  switch (action) {
  case MIM_GA_TRANSFER:
  case MIM_GA_PROMOTE:
  case MIM_GA_DEMOTE:
    verb = "role";
    break;
  case MIM_GA_MUTE:
  case MIM_GA_UNMUTE:
  case MIM_GA_MUTE_ALL:
  case MIM_GA_UNMUTE_ALL:
    verb = "mute";
    break;
  case MIM_GA_SET_INFO:
    verb = "info";
    break;
  case MIM_GA_DISSOLVE:
    verb = "dissolve";
    break;
  default:
    return -EINVAL;
  }
  struct mim__notice_out o = {.buf = buf, .cap = cap};
  mim__notice_head(&o, group, verb, actor, members, n);
  char tail[96];
  switch (action) {
  case MIM_GA_TRANSFER:
    mim__notice_put_lit(&o, ",\"role\":\"owner\"");
    break;
  case MIM_GA_PROMOTE:
    mim__notice_put_lit(&o, ",\"role\":\"admin\"");
    break;
  case MIM_GA_DEMOTE:
    mim__notice_put_lit(&o, ",\"role\":\"member\"");
    break;
  case MIM_GA_MUTE:
  case MIM_GA_UNMUTE: {
    int tl = snprintf(tail, sizeof tail, ",\"muted\":%s,\"until\":%lld",
                  action == MIM_GA_MUTE ? "true" : "false",
                  action == MIM_GA_MUTE ? (long long)until : 0LL);
    mim__notice_put(&o, tail, (size_t)tl);
    break;
  }
  case MIM_GA_MUTE_ALL:
  case MIM_GA_UNMUTE_ALL:
    mim__notice_put_lit(&o, action == MIM_GA_MUTE_ALL ? ",\"all\":true"
                                                      : ",\"all\":false");
    break;
  case MIM_GA_SET_INFO:
    mim__notice_put_lit(&o, ",\"name\":");
    mim__notice_put_str(&o, name != NULL ? name : "");
    break;
  default:
    break;
  }
  return mim__notice_end(&o, len);
}
