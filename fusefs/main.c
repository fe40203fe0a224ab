/* SPDX-License-Identifier: MIT
 * main.c — forkfs's command line and start-up order:
 *
 *   options -> store (rebuild the tree) -> run directory -> FUSE session and
 *   mount -> daemonize (unless -f) -> fork the spawner (still one thread) ->
 *   libuv loop set-up -> seccomp filter (-o seccomp=) -> the layer compactor
 *   (branch/layer.h: the first thread) -> run the loop -> unmount and clean
 *   up.
 *
 * The spawner (spawner.c) is forked before the filter is loaded because
 * children inherit seccomp filters: the VMMs it launches must not run under
 * forkfs's. It is forked after daemonizing so that forkfs is its parent.
 *
 * forkfs's own -o options are taken out with fuse_opt_parse(); the rest
 * (allow_other, max_read, ...) go to fuse_session_new() untouched.
 */
#define FUSE_USE_VERSION 34
#include <errno.h>
#include <fuse_lowlevel.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/resource.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#define LOG_PREFIX ""
#include "common/log.h"
#include "common/macro.h"
#include "common/util.h"
#include "branch/layer.h"
#include "uffd/engine.h"
#include "fusefs/forkfs.h"
#include "fusefs/seccomp.h"
#include "sandbox/supervisor.h"

#define DEFAULT_STORE "/var/lib/forkfs"
#define DEFAULT_LOG_MAX_MIB 4
#define DEFAULT_SERVICE_NICE (-10)
#define MAX_COPIES 1024	/* -o copies= */
#define STRINGIFY_(x) #x
#define STRINGIFY(x) STRINGIFY_(x)
#ifdef BUILT_WITH_ASAN
#define DEFAULT_SECCOMP "log"	/* see common/macro.h */
#else
#define DEFAULT_SECCOMP "kill"
#endif

struct options {
	char *store;
	char *vmm;
	char *mode;
	char *branch_mode;
	char *copy_rate;
	char *log_max;
	char *seccomp;
	char *incremental;
	char *jail;
	char *jail_ids;
	char *allow_path;
	char *vmm_args;
	char *passthrough;
	char *nice;
	char *copies;
};

#define OPT(t, p) { t, offsetof(struct options, p), 0 }
static const struct fuse_opt option_spec[] = {
	OPT("store=%s", store),
	OPT("vmm=%s", vmm),
	OPT("mode=%s", mode),
	OPT("branch_mode=%s", branch_mode),
	OPT("copy_rate=%s", copy_rate),
	OPT("log_max=%s", log_max),
	OPT("seccomp=%s", seccomp),
	OPT("incremental=%s", incremental),
	OPT("jail=%s", jail),
	OPT("jail_ids=%s", jail_ids),
	OPT("allow_path=%s", allow_path),
	OPT("vmm_args=%s", vmm_args),
	OPT("passthrough=%s", passthrough),
	OPT("nice=%s", nice),
	OPT("copies=%s", copies),
	FUSE_OPT_END,
};

static void usage(const char *prog)
{
	printf("usage: %s [options] [SOURCE] MOUNTPOINT\n\n"
	       "Presents microVM sandboxes as directories; mkdir SANDBOX/branches/TAG takes a\n"
	       "live branch of a running VM. SOURCE (as mount(8) passes it) names the\n"
	       "file system in /proc/mounts. See forkfs(8).\n\n"
	       "forkfs options:\n"
	       "    -o store=DIR           store directory (default " DEFAULT_STORE ")\n"
	       "    -o vmm=PATH            VMM binary (default: $FORKFS_MINIVM, else firecracker\n"
	       "                           from PATH, else forkfs-minivm in ../bin beside\n"
	       "                           forkfs, else " BINDIR "/forkfs-minivm)\n"
	       "    -o vmm_args=ARGS       more arguments for the VMM, separated by spaces\n"
	       "    -o mode=auto|live|full branch mode (default auto: live when the VMM can)\n"
	       "    -o branch_mode=MODE    octal mode of branch files (default 0400)\n"
	       "    -o copy_rate=MIB       cap a live branch's background copy at MIB MiB/s\n"
	       "                           (default 0: no cap; guest writes are never held)\n"
	       "    -o incremental=on|off  a live branch after another stores only the pages\n"
	       "                           written since (default on)\n"
	       "    -o log_max=MIB         a sandbox log turns into log.1 past MIB MiB\n"
	       "                           (default " STRINGIFY(DEFAULT_LOG_MAX_MIB) "; 0: no cap)\n"
	       "    -o passthrough=on|off  the kernel reads ready branches' files from the\n"
	       "                           store itself, FUSE passthrough (default on where\n"
	       "                           libfuse, the kernel and CAP_SYS_ADMIN allow it)\n"
	       "    -o copies=N            at most N live branches copy in the background at\n"
	       "                           once, the others wait their turn (default: one per\n"
	       "                           CPU; 0: no limit)\n"
	       "    -o nice=N              forkfs's loop, its workers and fault threads run at\n"
	       "                           forkfs's own nice plus N, -20 to 0 (default -10,\n"
	       "                           needs CAP_SYS_NICE); so do background copies,\n"
	       "                           unless -o copies=0 (then at forkfs's own)\n"
	       "    -o seccomp=MODE        system call allow-list once set up: kill (default:\n"
	       "                           a call outside it kills forkfs), log or off\n"
	       "    -o jail=on|off         confine each VMM forkfs launches: own uid, root,\n"
	       "                           namespaces, cgroup (default on as root)\n"
	       "    -o jail_ids=FIRST:N    the jails' uids and gids: FIRST to FIRST+N-1\n"
	       "                           (default: 65536 ids picked from forkfs's pid)\n"
	       "    -o allow_path=DIR[:DIR] where config.json's files may be besides the store\n"
	       "                           (a read-only file everyone may read: anywhere)\n\n",
	       prog);
}

/* DIR/NAME if it is executable (malloc'ed), or NULL. */
static char *executable_in(const char *dir, const char *name)
{
	char *p;

	if (asprintf(&p, "%s/%s", dir, name) < 0)
		return NULL;
	if (access(p, X_OK) == 0)
		return p;
	free(p);
	return NULL;
}

/* The executable named "name" in $PATH, or NULL. */
static char *find_in_path(const char *name)
{
	const char *path = getenv("PATH");
	char *copy, *dir, *save = NULL, *found = NULL;

	if (!path || !(copy = strdup(path)))
		return NULL;
	for (dir = strtok_r(copy, ":", &save); dir && !found; dir = strtok_r(NULL, ":", &save))
		found = executable_in(*dir ? dir : ".", name);
	free(copy);
	return found;
}

/* What main() sets up before the tree exists. */
struct setup {
	struct tree_options t;
	char *vmm_path;
	char *store;
	char *run_dir;
	enum forkfs_seccomp seccomp;
	int service_nice;	/* -o nice= */
	unsigned copies;	/* -o copies= */
};

/* forkfs-minivm installed beside this forkfs: PREFIX/sbin/forkfs finds
 * PREFIX/bin/forkfs-minivm, wherever PREFIX is (a DESTDIR install, a moved
 * tree). NULL when there is none. */
static char *minivm_beside_us(void)
{
	char exe[PATH_MAX], *slash;
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);

	if (n <= 0)
		return NULL;
	exe[n] = '\0';
	if (!(slash = strrchr(exe, '/')))
		return NULL;
	*slash = '\0';
	return executable_in(exe, "../bin/forkfs-minivm");
}

static int pick_vmm(struct setup *s, const char *opt)
{
	const char *env = getenv("FORKFS_MINIVM");

	if (opt)
		s->vmm_path = strdup(opt);
	else if (env && *env)
		s->vmm_path = strdup(env);
	else if (!(s->vmm_path = find_in_path("firecracker")) &&
		 !(s->vmm_path = minivm_beside_us()))
		s->vmm_path = strdup(BINDIR "/forkfs-minivm");
	if (!s->vmm_path)
		return -ENOMEM;
	if (access(s->vmm_path, X_OK) < 0)
		log_warning_errno(errno, "VMM %s is not executable (start will fail)", s->vmm_path);
	s->t.vmm_path = s->vmm_path;
	return 0;
}

/* -o NAME=on|off: *ret is dflt when not given. */
static int parse_on_off(const char *name, const char *v, bool dflt, bool *ret)
{
	if (v && strcmp(v, "on") && strcmp(v, "off"))
		return log_error_errno(EINVAL, "-o %s= takes on or off", name);
	*ret = v ? !strcmp(v, "on") : dflt;
	return 0;
}

/* -o jail= and jail_ids=: on by default as root (the jail needs it). The
 * default ids: 65536 of them, at an offset picked from our pid, so that two
 * forkfs on one machine do not share ids (unless their pids collide modulo
 * 4096: give each its own jail_ids= then). */
static int parse_jail(struct setup *s, const struct options *o)
{
	uint64_t first = 1000000000ULL + (uint64_t)(getpid() % 4096) * 65536, n = 65536;
	char *colon;

	if (parse_on_off("jail", o->jail, geteuid() == 0, &s->t.jail) < 0)
		return -EINVAL;
	if (s->t.jail && geteuid() != 0)
		return log_error_errno(EPERM, "-o jail=on needs root (or mount with -o jail=off)");
	if (o->jail_ids) {
		colon = strchr(o->jail_ids, ':');
		if (!colon)
			return log_error_errno(EINVAL, "-o jail_ids= takes FIRST:COUNT");
		*colon = '\0';
		if (parse_u64(o->jail_ids, &first) < 0 || parse_u64(colon + 1, &n) < 0 || first == 0 ||
		    n == 0 || first + n > 0xFFFF0000ULL)
			return log_error_errno(EINVAL, "-o jail_ids= takes FIRST:COUNT, ids from 1 to %u",
					       0xFFFF0000U);
	}
	s->t.jail_id_first = (uint32_t)first;
	s->t.jail_id_count = (uint32_t)n;
	return 0;
}

/* -o vmm_args="A B ...": words the VMM gets after --api-sock PATH. */
static int parse_vmm_args(struct setup *s, char *list)
{
	char *save = NULL;

	for (char *w = strtok_r(list, " ", &save); w; w = strtok_r(NULL, " ", &save)) {
		char **a;

		if (s->t.n_vmm_args == VMM_ARGS_MAX)
			return log_error_errno(E2BIG, "-o vmm_args=: more than %d words", VMM_ARGS_MAX);
		a = realloc(s->t.vmm_args, (s->t.n_vmm_args + 1) * sizeof(*a));
		if (!a)
			return log_error_errno(ENOMEM, "-o vmm_args=");
		s->t.vmm_args = a;
		a[s->t.n_vmm_args++] = w;	/* points into o->vmm_args, freed last */
	}
	return 0;
}

/* -o allow_path=DIR[:DIR...]: each an existing directory, kept as its real path. */
static int parse_allow_path(struct setup *s, char *list)
{
	char *save = NULL;

	for (char *d = strtok_r(list, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
		char *real = realpath(d, NULL), **a;
		struct stat st;

		if (!real || stat(real, &st) < 0 || !S_ISDIR(st.st_mode)) {
			free(real);
			return log_error_errno(ENOTDIR, "-o allow_path=: %s is not a directory", d);
		}
		a = realloc(s->t.allow_path, (s->t.n_allow_path + 1) * sizeof(*a));
		if (!a) {
			free(real);
			return log_error_errno(ENOMEM, "-o allow_path=");
		}
		a[s->t.n_allow_path++] = real;
		s->t.allow_path = a;
	}
	return 0;
}

/* -o copies= by default: one background copy per online CPU. */
static unsigned default_copies(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	return n < 1 ? 1 : n > MAX_COPIES ? MAX_COPIES : (unsigned)n;
}

static int parse_options(struct forkfs *fs, struct setup *s, struct options *o)
{
	uint64_t m;
	bool on;
	int r;

	if (!o->mode || !strcmp(o->mode, "auto"))
		s->t.mode = BRANCH_MODE_AUTO;
	else if (!strcmp(o->mode, "live"))
		s->t.mode = BRANCH_MODE_LIVE;
	else if (!strcmp(o->mode, "full"))
		s->t.mode = BRANCH_MODE_FULL;
	else
		return log_error_errno(EINVAL, "-o mode= takes auto, live or full");
	fs->branch_file_mode = 0400;
	if (o->branch_mode) {
		char *end;

		m = strtoull(o->branch_mode, &end, 8);
		if (*end || !*o->branch_mode || m > 0666 || !(m & 0400))
			return log_error_errno(EINVAL, "-o branch_mode= takes an octal mode within 0666 that includes 0400");
		fs->branch_file_mode = (mode_t)m;
	}
	if (o->copy_rate) {
		if (parse_u64(o->copy_rate, &m) < 0 || m > (UINT64_MAX >> 20))
			return log_error_errno(EINVAL, "-o copy_rate= takes a number of MiB/s");
		s->t.copy_rate = m << 20;
	}
	if (parse_on_off("incremental", o->incremental, true, &on) < 0)
		return -EINVAL;
	s->t.no_incremental = !on;
	if (parse_on_off("passthrough", o->passthrough, true, &on) < 0)
		return -EINVAL;
	fs->passthrough_off = !on;
	s->service_nice = DEFAULT_SERVICE_NICE;
	if (o->nice) {
		char *end;
		long v;

		errno = 0;
		v = strtol(o->nice, &end, 10);
		if (errno || *end || !*o->nice || v < -20 || v > 0)
			return log_error_errno(EINVAL, "-o nice= takes a number from -20 to 0");
		s->service_nice = (int)v;
	}
	s->copies = default_copies();
	if (o->copies) {
		if (parse_u64(o->copies, &m) < 0 || m > MAX_COPIES)
			return log_error_errno(EINVAL, "-o copies= takes a number from 0 to "
					       STRINGIFY(MAX_COPIES));
		s->copies = (unsigned)m;
	}
	s->t.log_max = (uint64_t)DEFAULT_LOG_MAX_MIB << 20;
	if (o->log_max) {
		if (parse_u64(o->log_max, &m) < 0 || m > (UINT64_MAX >> 20))
			return log_error_errno(EINVAL, "-o log_max= takes a number of MiB");
		s->t.log_max = m << 20;
	}
	r = parse_jail(s, o);
	if (r >= 0 && o->vmm_args)
		r = parse_vmm_args(s, o->vmm_args);
	if (r >= 0 && o->allow_path)
		r = parse_allow_path(s, o->allow_path);
	if (r < 0)
		return r;
	r = forkfs_seccomp_from_string(o->seccomp ? o->seccomp : DEFAULT_SECCOMP);
	if (r < 0)
		return log_error_errno(EINVAL, "-o seccomp= takes kill, log or off");
	s->seccomp = (enum forkfs_seccomp)r;
	return 0;
}

/* A store inside the mount point would have forkfs wait on its own requests. */
static int check_store_outside(const char *store, const char *mountpoint)
{
	_cleanup_free_ char *mnt = realpath(mountpoint, NULL);
	size_t n;

	if (!mnt)
		return log_error_errno(errno, "mount point %s", mountpoint);
	n = strlen(mnt);
	if (strncmp(store, mnt, n) == 0 && (store[n] == '/' || store[n] == 0 || n == 1))
		return log_error_errno(EINVAL, "the store %s must not be inside the mount point %s",
				       store, mnt);
	return 0;
}

static int setup_store(struct setup *s, const char *store)
{
	const char *path = store ? store : DEFAULT_STORE;

	if (mkdir(path, 0700) < 0 && errno != EEXIST)
		return log_error_errno(errno, "cannot create store %s", path);
	s->store = realpath(path, NULL);
	if (!s->store)
		return log_error_errno(errno, "store %s", path);
	s->t.store = s->store;
	return 0;
}

static int setup_run_dir(struct setup *s)
{
	const char *base = getuid() == 0 ? "/run" : getenv("XDG_RUNTIME_DIR");
	char *t;

	if (!base || access(base, W_OK) < 0)
		base = "/tmp";
	if (asprintf(&t, "%s/forkfs.XXXXXX", base) < 0)
		return -ENOMEM;
	if (!mkdtemp(t)) {
		int r = log_error_errno(errno, "cannot create a run directory under %s", base);
		free(t);
		return r;
	}
	s->run_dir = t;
	s->t.run_dir = t;
	return 0;
}

/* Every sandbox's log, open file, branch and reader costs fds: take the hard
 * limit as the soft one (systemd does the same for its services), before the
 * store is loaded. The spawner, and so the VMMs, keep the limit forkfs was
 * started with (nofile_for_children around its fork). */
static struct rlimit nofile_start;

static void raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &nofile_start) < 0)
		return;
	rl = nofile_start;
	if (rl.rlim_cur >= rl.rlim_max)
		return;
	rl.rlim_cur = rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
		log_warning_errno(errno, "cannot raise RLIMIT_NOFILE to %llu",
				  (unsigned long long)rl.rlim_max);
}

/* -o nice=N: this (the loop's) thread, and so every thread it starts, at
 * our nice plus N (N <= 0); on a machine whose cores guests and readers keep busy, a
 * request to the mount then waits less for a core (BENCHMARKS.md, load). */
static void raise_service_threads(int nice)
{
	int r;

	if (nice == 0)
		return;
	r = thread_nice_raise(-nice);
	if (r < 0)
		log_info("service threads stay at forkfs's nice (-o nice=%d: %s)", nice,
			 strerror(-r));
	else
		log_info("service threads at forkfs's nice %d", nice);
}

/* true: the limit forkfs started with; false: forkfs's own (the hard one). */
static void nofile_for_children(bool children)
{
	struct rlimit rl = nofile_start;

	if (rl.rlim_cur == 0 || rl.rlim_cur >= rl.rlim_max)
		return;
	if (!children)
		rl.rlim_cur = rl.rlim_max;
	(void)setrlimit(RLIMIT_NOFILE, &rl);
}

/* Final clean-up once the loop has ended: nothing runs any more. The nodes
 * go first: they hold references on the sandboxes. */
static void teardown(struct forkfs *fs, struct setup *s)
{
	layer_compactor_stop();
	files_free_all(fs);
	node_forget_all(&fs->inodes);
	tree_free(&fs->tree);
	if (s->run_dir && rmdir(s->run_dir) < 0)
		log_warning_errno(errno, "cannot remove %s", s->run_dir);
}

/* systemd's readiness protocol (sd_notify(3)) without libsystemd: one
 * datagram to $NOTIFY_SOCKET (a path, or "@name" in the abstract namespace).
 * The variable is taken out of the environment at start, so that the VMMs
 * do not inherit it; nothing is sent when it was not set. */
static char *notify_socket;

static void notify_take(void)
{
	const char *p = getenv("NOTIFY_SOCKET");

	if (p && (p[0] == '/' || p[0] == '@'))
		notify_socket = strdup(p);
	unsetenv("NOTIFY_SOCKET");
}

static void notify_send(const char *msg)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	size_t n = notify_socket ? strlen(notify_socket) : 0;
	int fd;

	if (!n || n >= sizeof(sa.sun_path))
		return;
	memcpy(sa.sun_path, notify_socket, n);
	if (sa.sun_path[0] == '@')
		sa.sun_path[0] = '\0';
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return;
	if (sendto(fd, msg, strlen(msg), MSG_NOSIGNAL, (struct sockaddr *)&sa,
		   (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n)) < 0)
		log_warning_errno(-errno, "cannot notify the service manager at %s", notify_socket);
	close(fd);
}

/* The mount(8) form, "forkfs SOURCE MOUNTPOINT [-o OPTS]", as mount.fuse3
 * runs it for "mount -t fuse.forkfs SOURCE MOUNTPOINT" and fstab: with two
 * arguments that are not options, the first is the source, shown as the
 * file system's name in /proc/mounts. It is taken out of argv. */
static const char *take_source(int *argc, char **argv)
{
	int first = 0, n = 0;
	const char *src;

	for (int i = 1; i < *argc; i++) {
		if (!strcmp(argv[i], "-o")) {
			i++;
			continue;
		}
		if (argv[i][0] == '-')
			continue;
		if (!n++)
			first = i;
	}
	if (n != 2)
		return NULL;
	src = argv[first];
	memmove(&argv[first], &argv[first + 1], (size_t)(*argc - first) * sizeof(argv[0]));
	(*argc)--;
	return src;
}

int main(int argc, char *argv[])
{
	const char *source = take_source(&argc, argv);
	struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
	char ready[PATH_MAX + 64];
	char fsname_opt[160];
	struct fuse_cmdline_opts cmd = { 0 };
	struct options o = { 0 };
	static struct forkfs fs;
	struct setup s = { .seccomp = FORKFS_SECCOMP_KILL };
	int r, ret = 1;

	log_set_ident("forkfs");
	notify_take();
	setenv("UV_THREADPOOL_SIZE", "16", 0);
	/* libuv >= 1.45 would batch epoll_ctl through io_uring, which the
	 * seccomp allow-list does not admit; epoll is what it was written for. */
	setenv("UV_USE_IO_URING", "0", 1);
	signal(SIGPIPE, SIG_IGN);

	if (fuse_opt_parse(&args, &o, option_spec, NULL) < 0 || fuse_parse_cmdline(&args, &cmd) < 0) {
		ret = 2;
		goto out_args;
	}
	if (cmd.show_help) {
		usage(argv[0]);
		/* Not fuse_cmdline_help(): its -s/clone_fd/max_threads options are
		 * for libfuse's own loops, and forkfs runs one libuv loop. */
		printf("    -h   --help            print help\n"
		       "    -V   --version         print version\n"
		       "    -d   -o debug          enable debug output (implies -f)\n"
		       "    -f                     foreground operation\n");
		fuse_lowlevel_help();
		ret = 0;
		goto out_args;
	}
	if (cmd.show_version) {
		printf("forkfs %s\n", PACKAGE_VERSION);
		fuse_lowlevel_version();
		ret = 0;
		goto out_args;
	}
	if (!cmd.mountpoint) {
		fprintf(stderr, "forkfs: no mount point given (see --help)\n");
		ret = 2;
		goto out_args;
	}
	if (cmd.debug)
		log_set_max_level(LOG_LEVEL_DEBUG);
	s.t.vmm_output_to_stderr = cmd.foreground;
	fs.uid = getuid();
	fs.gid = getgid();
	inodes_init(&fs.inodes);
	if (parse_options(&fs, &s, &o) < 0 || pick_vmm(&s, o.vmm) < 0 ||
	    setup_store(&s, o.store) < 0 || check_store_outside(s.store, cmd.mountpoint) < 0 ||
	    setup_run_dir(&s) < 0)
		goto out_args;
	raise_nofile();
	if (tree_init(&fs.tree, &fs.loop, &s.t) < 0 || tree_load_store(&fs.tree) < 0)
		goto out_run;
	/* The source names the file system unless it would break the option list. */
	if (!source || !*source || strpbrk(source, ",\\ \t\n") || strlen(source) > 100)
		source = "forkfs";
	snprintf(fsname_opt, sizeof(fsname_opt), "-odefault_permissions,fsname=%s,subtype=forkfs",
		 source);
	if (fuse_opt_add_arg(&args, fsname_opt) < 0)
		goto out_run;

	fs.se = fuse_session_new(&args, &forkfs_ops, sizeof(forkfs_ops), &fs);
	if (!fs.se)
		goto out_run;
	if (fuse_session_mount(fs.se, cmd.mountpoint) != 0)
		goto out_session;
	if (fuse_daemonize(cmd.foreground) != 0)
		goto out_unmount;
	fs.tree.env.loop_thread = pthread_self();	/* this process's (daemonized) */
	nofile_for_children(true);
	r = supervisor_fork_spawner();
	nofile_for_children(false);
	if (r < 0)
		goto out_unmount;
	r = uv_loop_init(&fs.loop);
	if (r < 0) {
		log_error("uv_loop_init: %s", uv_strerror(r));
		goto out_spawner;
	}
	raise_service_threads(s.service_nice);	/* after the spawner's fork: VMMs keep our nice */
	/* A few copies at a time, at the service threads' nice (BENCHMARKS.md,
	 * load); without a limit, at forkfs's own, as many as there are. */
	engine_set_copy_slots(s.copies, s.copies ? -s.service_nice : 0);
	if (supervisor_watch(&fs.loop) < 0 || forkfs_seccomp_install(s.seccomp) < 0)
		goto out_loop;
	layer_compactor_start();	/* threads only now: after every fork */
	/* Mounted and set up: requests queue in the kernel until the loop runs. */
	snprintf(ready, sizeof(ready), "READY=1\nSTATUS=mounted on %s\nMAINPID=%d",
		 cmd.mountpoint, (int)getpid());
	notify_send(ready);
	log_info("mounted on %s (store %s, vmm %s, run directory %s)", cmd.mountpoint, s.store,
		 s.vmm_path, s.run_dir);
	if (s.t.jail)
		log_info("VMMs run jailed, uids %u to %u", s.t.jail_id_first,
			 s.t.jail_id_first + s.t.jail_id_count - 1);
	else
		log_info("VMMs run without a jail (-o jail=off)");
	if (s.t.copy_rate)
		log_info("live branches copy in the background at %" PRIu64 " MiB/s at most",
			 s.t.copy_rate >> 20);
	if (s.copies)
		log_info("at most %u background copies at once; more branches wait their turn",
			 s.copies);
	if (forkfs_run(&fs) == 0)
		ret = 0;
out_loop:
	supervisor_unwatch();	/* already done unless forkfs_run failed early */
	uv_run(&fs.loop, UV_RUN_NOWAIT);
	r = uv_loop_close(&fs.loop);
	if (r < 0)
		log_warning("uv_loop_close: %s", uv_strerror(r));
	/* Still mounted after a SIGTERM: unmount here (lazily, as libfuse
	 * would), so that libfuse's own unmount finds it done. As root libfuse
	 * would also look at /etc/mtab (access, getuid), as a user it would
	 * fork fusermount3: the filter allows neither. */
	if (s.seccomp != FORKFS_SECCOMP_OFF) {
		if (geteuid() != 0)
			supervisor_unmount(cmd.mountpoint);
		else if (umount2(cmd.mountpoint, MNT_DETACH) < 0 && errno != EINVAL &&
			 errno != ENOENT)
			log_warning_errno(errno, "umount %s", cmd.mountpoint);
	}
out_spawner:
	supervisor_end_spawner();
out_unmount:
	fuse_session_unmount(fs.se);
out_session:
	fuse_session_destroy(fs.se);
out_run:
	teardown(&fs, &s);
out_args:
	free(s.run_dir);
	free(s.store);
	free(s.vmm_path);
	free(notify_socket);
	free(cmd.mountpoint);
	fuse_opt_free_args(&args);
	free(o.store);
	free(o.vmm);
	free(o.mode);
	free(o.branch_mode);
	free(o.copy_rate);
	free(o.nice);
	free(o.copies);
	free(o.incremental);
	free(o.passthrough);
	free(o.jail);
	free(o.jail_ids);
	free(o.allow_path);
	free(s.t.vmm_args);
	free(o.vmm_args);
	for (size_t i = 0; i < s.t.n_allow_path; i++)
		free(s.t.allow_path[i]);
	free(s.t.allow_path);
	free(o.log_max);
	free(o.seccomp);
	return ret;
}
