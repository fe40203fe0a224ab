/* SPDX-License-Identifier: MIT
 * store.h — the store on disk: its layout, and the file operations on it.
 * No state; every function returns 0 or -errno and never logs.
 *
 * Layout (documented in forkfs(8)):
 *   STORE/sandboxes/NAME/config.json      the committed config.json
 *   STORE/sandboxes/NAME/log              the sandbox's log
 *   STORE/sandboxes/NAME/branches/TAG/    vmstate, memory.bin, branch.state
 *                                         (written by the core library)
 * Names are checked with name_is_valid() before they are joined to a path,
 * so nothing a user types reaches outside the store.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#define STORE_CONFIG "config.json"
#define STORE_LOG "log"
#define STORE_BRANCHES "branches"

/* "a/b", malloc'd, or NULL (out of memory). */
char *store_path(const char *a, const char *b);
/* Create the sandboxes directory (and the store) if missing. Both must be
 * directories owned by root or the caller and writable by nobody else:
 * -EPERM (or -ENOTDIR) if not. */
int store_init(const char *store, const char *sandboxes_dir);
/* Create a new sandbox directory and its branches/ (EEXIST if it exists). */
int store_create_sandbox(const char *dir);
/* Remove a directory tree of the store: files and sub-directories. */
int store_rm_rf(const char *path);
/* Call fn for each sub-directory of dir whose name is valid (name_is_valid);
 * others are counted in *ret_skipped. fn returning < 0 is ignored (the entry
 * is skipped). Returns 0 or the error of opening dir. */
int store_for_each_dir(const char *dir, int (*fn)(const char *name, void *ctx), void *ctx,
		       unsigned *ret_skipped);
/* config.json of a sandbox directory: read (NULL text if absent; a symlink
 * or anything but a regular file is refused) and write (atomically and
 * durably; a symlink there is replaced, not followed). */
int store_read_config(const char *sb_dir, size_t max, char **ret, size_t *ret_len);
int store_write_config(const char *sb_dir, const char *text, size_t len);
/* The sandbox's log, opened for appending (created if missing; a symlink
 * there is -ELOOP). */
int store_open_log(const char *sb_dir);
