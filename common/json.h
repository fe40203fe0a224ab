/* SPDX-License-Identifier: MIT
 * json.h — scope-bound cleanup for json-c objects (see macro.h's _cleanup_),
 * for every part of forkfs that builds or parses JSON. Header only: a user
 * needs $(JSONC_CFLAGS) and $(JSONC_LIBS), libcommon does not.
 */
#pragma once

#include <json-c/json.h>
#include "common/macro.h"

/* json_object_put() when the variable goes out of scope (NULL-safe). */
DEFINE_TRIVIAL_CLEANUP_FUNC(struct json_object *, json_object_put);
#define _cleanup_json_ _cleanup_(json_object_putp)
