/* libmim — umbrella header: includes every public header except the
 * unstable internal RPC codec (<mim/rpc.h>). */
#ifndef MIM_MIM_H
#define MIM_MIM_H

#include <mim/common.h>
#include <mim/version.h>
#include <mim/codec.h>
#include <mim/auth.h>
#include <mim/store.h>
#include <mim/backend.h>
#include <mim/lmdb.h>
#include <mim/session.h>
#include <mim/logic.h>

#endif /* MIM_MIM_H */
