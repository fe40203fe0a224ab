/* SPDX-License-Identifier: MIT
 * internal.h — what fc/http.c shares with fc/api.c and nobody else.
 */
#pragma once

#include "common/macro.h"
#include "fc/fc.h"

/* Set the client's last error text, with control characters replaced
 * (string_sanitize(): a VMM's text must not forge log lines or send terminal
 * escapes); returns r. */
int fc__set_error(struct fc_client *c, int r, const char *fmt, ...) _printf_(3, 4);
