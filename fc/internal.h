/* SPDX-License-Identifier: MIT
 * internal.h — what fc/http.c shares with fc/api.c and nobody else.
 */
#pragma once

#include "common/macro.h"
#include "fc/fc.h"

/* Set the client's last error text; returns r. */
int fc__set_error(struct fc_client *c, int r, const char *fmt, ...) _printf_(3, 4);
/* Replace control characters (< 0x20, 0x7f) in s with '?': a VMM's text must
 * not forge log lines or send terminal escapes. Returns s (NULL-safe). */
char *fc__replace_control(char *s);
