/* SPDX-License-Identifier: MIT
 * forkfs.h — the daemon's shared types: the filesystem object (struct
 * forkfs), sandboxes, branch entries and inode nodes, and the functions the
 * fusefs/ files call on each other.
 *
 * Threading: one libuv loop thread owns everything declared here. Worker
 * threads (uv_queue_work) only ever touch the job structure they were given
 * plus immutable fields (names, store paths, the log fd) of the objects the
 * job holds references on; every result is applied to the tree in the
 * after-work callback, on the loop. Hence no locks in fusefs/.
 */
#pragma once

#define FUSE_USE_VERSION 34
#include <fuse_lowlevel.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>
#include <uv.h>

#include "common/util.h"
#include "branch/branch.h"
#include "fusefs/sbconfig.h"

#define FORKFS_CONFIG_MAX CONFIG_MAX_BYTES
#define FORKFS_NAME_MAX NAME_LEN_MAX

enum node_type {
	NODE_ROOT,
	NODE_SB_DIR,
	NODE_SB_CONFIG,
	NODE_SB_CTL,
	NODE_SB_STATE,
	NODE_SB_LOG,
	NODE_SB_BRANCHES,
	NODE_BR_DIR,
	NODE_BR_STATUS,
	NODE_BR_VMSTATE,
	NODE_BR_MEMORY,
	_NODE_TYPE_MAX,
};

/* One inode. See inode.c for the scheme. */
struct node {
	enum node_type type;
	uint64_t nlookup;	/* kernel references (lookup/mkdir minus forget) */
	uint64_t generation;
	bool linked;		/* still reachable in the tree */
	struct sandbox *sb;	/* owning sandbox (a reference), NULL for the root */
	struct sbranch *br;	/* owning branch entry (a reference) or NULL */
	struct node *next, **pprev;	/* fs->nodes: every node but the root */
};

enum sb_state { SB_CREATED, SB_RUNNING, SB_PAUSED, SB_STOPPED, SB_FAILED, _SB_STATE_MAX };
enum { SBN_DIR, SBN_CONFIG, SBN_CTL, SBN_STATE, SBN_LOG, SBN_BRANCHES, _SBN_MAX };
enum { BRN_DIR, BRN_STATUS, BRN_VMSTATE, BRN_MEMORY, _BRN_MAX };

/* A branch entry: the name space side of a core struct branch. */
enum sbr_phase {
	SBR_TAKING,	/* mkdir in flight: reserved, invisible */
	SBR_VISIBLE,
	SBR_DELETING,	/* rmdir in flight: invisible, still reserved */
};

struct sbranch {
	unsigned refs;
	struct sandbox *sb;	/* a reference */
	char tag[FORKFS_NAME_MAX + 1];
	char *dir;		/* store directory */
	enum sbr_phase phase;
	struct branch *b;	/* NULL if the store copy could not be loaded */
	char load_error[128];	/* why b is NULL */
	struct node *nodes[_BRN_MAX];
	struct timespec ctime;
	struct sbranch *next;
};

struct vmm_proc;

struct sandbox {
	unsigned refs;
	struct forkfs *fs;
	char name[FORKFS_NAME_MAX + 1];
	char *dir;		/* store directory */
	unsigned seq;		/* names its run directory */
	bool linked;
	enum sb_state state;
	char *config;		/* committed config.json (validated), NUL-terminated */
	size_t config_len;
	int log_fd;		/* O_APPEND, in the store */
	struct node *nodes[_SBN_MAX];
	struct sbranch *branches;
	struct timespec ctime;

	struct vmm *vmm;	/* core handle while a VMM is up */
	struct vmm_proc *proc;	/* the VMM forkfs launched, or NULL */
	bool attached;		/* attach form: not ours to stop */
	char *run_dir;		/* private short dir for sockets while started */
	const char *busy;	/* operation in flight ("start", "branch" ...) or NULL */
	/* Called once the launched VMM has exited after sandbox_stop(). */
	void (*stop_done)(struct sandbox *sb, void *userdata);
	void *stop_userdata;
	struct sandbox *next;
};

struct forkfs {
	uv_loop_t loop;
	struct fuse_session *se;
	uv_poll_t fuse_poll;
	bool fuse_poll_active;
	uv_signal_t signals[3];
	struct fuse_buf fbuf;

	char *store;		/* -o store= */
	char *sandboxes_dir;	/* store/sandboxes */
	char *vmm_path;		/* -o vmm= or the default */
	char *run_dir;		/* private directory for API sockets */
	enum branch_mode_req mode;
	mode_t branch_mode;
	uint64_t copy_rate;		/* -o copy_rate, in bytes/s; 0 = no cap */
	bool foreground;
	uid_t uid;
	gid_t gid;

	struct node root;
	struct node *nodes;	/* every other node, for node_forget_all() */
	struct sandbox *sandboxes;
	unsigned next_seq;
	uint64_t next_generation;
	unsigned jobs;		/* work items and children in flight */
	bool shutting_down;
};

/* inode.c */
struct node *node_new(struct forkfs *fs, enum node_type type, struct sandbox *sb,
		      struct sbranch *br);
struct node *node_from_ino(struct forkfs *fs, fuse_ino_t ino);
fuse_ino_t node_ino(struct forkfs *fs, struct node *n);
void node_unlink(struct node *n);
void node_forget(struct forkfs *fs, struct node *n, uint64_t nlookup);
/* The mount is gone and its lookups with it: free the nodes only they kept. */
void node_forget_all(struct forkfs *fs);
const char *node_type_name(enum node_type t);

/* tree.c */
struct sandbox *sandbox_ref(struct sandbox *sb);
struct sandbox *sandbox_unref(struct sandbox *sb);
struct sbranch *sbranch_ref(struct sbranch *br);
struct sbranch *sbranch_unref(struct sbranch *br);
struct sandbox *tree_find_sandbox(struct forkfs *fs, const char *name);
struct sbranch *tree_find_branch(struct sandbox *sb, const char *tag, bool visible_only);
int tree_load_store(struct forkfs *fs);
int tree_mkdir_sandbox(struct forkfs *fs, const char *name, struct sandbox **ret);
int tree_rmdir_sandbox(struct forkfs *fs, fuse_req_t req, const char *name);
int tree_mkdir_branch(struct sandbox *sb, fuse_req_t req, const char *tag);
int tree_rmdir_branch(struct sandbox *sb, fuse_req_t req, const char *tag);
void tree_shutdown(struct forkfs *fs);
const char *sb_state_to_string(enum sb_state s);
int sandbox_set_config(struct sandbox *sb, const char *text, size_t len);
/* Timestamped line into the sandbox's log (and stderr). Any thread. */
void sb_log(struct sandbox *sb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The errno a failed operation answers with (positive): the ones forkfs(8)
 * documents pass, anything else (a VMM's refusal, a dropped connection) is EIO. */
int forkfs_errno(int r);

/* sandbox.c: ctl commands; each replies to req itself (maybe later). */
void sandbox_ctl(struct sandbox *sb, fuse_req_t req, const char *cmd, size_t size);
/* Stop a started sandbox; done runs on the loop once it is stopped. 0 if it
 * will run (perhaps already has), -EINVAL if there is nothing to stop. */
int sandbox_stop(struct sandbox *sb, void (*done)(struct sandbox *, void *), void *userdata);

/* supervisor.c: launched VMM processes. */
int vmm_proc_spawn(struct sandbox *sb, const char *api_socket);
bool vmm_proc_alive(struct vmm_proc *p);
pid_t vmm_proc_pid(struct vmm_proc *p);
void vmm_proc_terminate(struct vmm_proc *p);

/* daemon.c */
void forkfs_job_begin(struct forkfs *fs);
void forkfs_job_end(struct forkfs *fs);
/* Run work on libuv's pool, counted as a job (done calls forkfs_job_end()).
 * Should it not be queued (never in practice), it runs here and now. */
void forkfs_queue_job(struct forkfs *fs, uv_work_t *w, uv_work_cb run, uv_after_work_cb done);
void forkfs_shutdown(struct forkfs *fs, const char *why);
int forkfs_run(struct forkfs *fs);

/* ops.c */
extern const struct fuse_lowlevel_ops forkfs_ops;
void fill_attr(struct forkfs *fs, struct node *n, struct stat *st);
