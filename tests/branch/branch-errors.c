/* SPDX-License-Identifier: MIT
 * branch-errors.c — branch_take()'s failures against a fake VMM (a thread
 * answering canned HTTP on the API socket), no KVM needed: each failure is
 * returned with its reason in the struct error (the VMM's own words for API
 * errors), the VM is resumed when a failure follows the pause, and nothing
 * is left in the branch directory.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include "branch/branch.h"
#include "common/error.h"
#include "common/macro.h"
#include "tests/tap.h"

struct answer {
	const char *method, *path, *body_has;	/* body_has: NULL matches any body */
	int status;
	const char *body;
};

struct fake_vmm {
	int lfd;
	const struct answer *answers;
	size_t n_answers;
	char seen[2048];	/* "METHOD PATH body\n" per request */
};

static char tmpdir[] = "/tmp/branch-errors.XXXXXX";

static const struct answer *find_answer(const struct fake_vmm *f, const char *method,
					const char *path, const char *body)
{
	for (size_t i = 0; i < f->n_answers; i++) {
		const struct answer *a = &f->answers[i];

		if (!strcmp(a->method, method) && !strcmp(a->path, path) &&
		    (!a->body_has || strstr(body, a->body_has)))
			return a;
	}
	return NULL;
}

/* Serve requests on one connection until the client goes away. */
static void *fake_main(void *p)
{
	struct fake_vmm *f = p;
	struct pollfd pfd = { .fd = f->lfd, .events = POLLIN };
	char req[8192], out[1024];
	size_t have = 0;
	int fd;

	if (poll(&pfd, 1, 5000) <= 0 || (fd = accept4(f->lfd, NULL, NULL, SOCK_CLOEXEC)) < 0)
		return NULL;
	for (;;) {
		char method[16], path[256], *hdr_end, *cl;
		const struct answer *a;
		size_t body_len = 0, used;
		ssize_t n;

		req[have] = '\0';
		hdr_end = strstr(req, "\r\n\r\n");
		if (hdr_end) {
			cl = strcasestr(req, "Content-Length:");
			if (cl && cl < hdr_end)
				body_len = strtoul(cl + 15, NULL, 10);
		}
		if (!hdr_end || (size_t)(hdr_end + 4 - req) + body_len > have) {
			n = read(fd, req + have, sizeof(req) - 1 - have);
			if (n <= 0)
				break;
			have += (size_t)n;
			continue;
		}
		used = (size_t)(hdr_end + 4 - req) + body_len;
		if (sscanf(req, "%15s %255s", method, path) != 2)
			break;
		hdr_end[4 + body_len] = '\0';
		snprintf(f->seen + strlen(f->seen), sizeof(f->seen) - strlen(f->seen), "%s %s %s\n",
			 method, path, hdr_end + 4);
		a = find_answer(f, method, path, hdr_end + 4);
		if (!a || a->status == 204)
			snprintf(out, sizeof(out), "HTTP/1.1 %s\r\n\r\n",
				 a ? "204 No Content" : "400 Bad Request\r\nContent-Length: 0");
		else
			snprintf(out, sizeof(out),
				 "HTTP/1.1 %d X\r\nContent-Type: application/json\r\n"
				 "Content-Length: %zu\r\n\r\n%s",
				 a->status, strlen(a->body), a->body);
		if (write(fd, out, strlen(out)) < 0)
			break;
		memmove(req, req + used, have - used);
		have -= used;
	}
	safe_close(fd);
	return NULL;
}

#define RUNNING "{\"id\":\"x\",\"state\":\"Running\",\"vmm_version\":\"1\",\"app_name\":\"f\"}"
#define MACHINE "{\"vcpu_count\":1,\"mem_size_mib\":1}"
#define FAULT(s) "{\"fault_message\":\"" s "\"}"

/* Take a branch of a fake VMM answering answers; returns branch_take()'s
 * result, its reason in err and the requests the VMM saw in seen. */
static int take(const char *name, const struct answer *answers, size_t n, enum branch_mode_req mode,
		bool dead, struct error *err, char *seen, size_t seen_size)
{
	struct fake_vmm f = { .answers = answers, .n_answers = n };
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char dir[256];
	struct branch *b = NULL;
	struct vmm *v = NULL;
	pthread_t t;
	int r;

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/%s.sock", tmpdir, name);
	snprintf(dir, sizeof(dir), "%s/%s", tmpdir, name);
	f.lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (f.lfd < 0 || bind(f.lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    listen(f.lfd, 4) < 0 || mkdir(dir, 0700) < 0 ||
	    pthread_create(&t, NULL, fake_main, &f) != 0) {
		safe_close(f.lfd);
		return -EIO;
	}
	r = vmm_new(sa.sun_path, 0, -1, tmpdir, &v);
	if (r == 0 && dead)
		vmm_set_dead(v);
	if (r == 0)
		r = branch_take(v, dir, mode, &b, err);
	branch_unref(b);
	vmm_unref(v);		/* closes the connection: the fake VMM ends */
	if (dead)
		shutdown(f.lfd, SHUT_RDWR);
	pthread_join(t, NULL);
	safe_close(f.lfd);
	snprintf(seen, seen_size, "%s", f.seen);
	tap_ok(rmdir(dir) == 0, "%s: nothing left in the branch directory", name);
	return r;
}

static void expect(const char *name, const struct answer *answers, size_t n,
		   enum branch_mode_req mode, int want, const char *why, const char *must_see)
{
	struct error err = ERROR_INIT;
	char seen[2048];
	int r = take(name, answers, n, mode, false, &err, seen, sizeof(seen));

	tap_ok(r == want && err.code == want && !strcmp(error_msg(&err), why),
	       "%s: %d (want %d): %s", name, r, want, error_msg(&err));
	if (must_see)
		tap_ok(strstr(seen, must_see) != NULL, "%s: the VMM saw \"%s\"", name, must_see);
}

static void cleanup(void)
{
	char cmd[256];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	(void)!system(cmd);
}

int main(void)
{
	static const struct answer not_started[] = {
		{ "GET", "/", NULL, 200, "{\"state\":\"Not started\"}" },
	};
	static const struct answer mc_fault[] = {
		{ "GET", "/", NULL, 200, RUNNING },
		{ "GET", "/machine-config", NULL, 400, FAULT("no machine here") },
	};
	static const struct answer snapshot_fault[] = {
		{ "GET", "/", NULL, 200, RUNNING },
		{ "GET", "/machine-config", NULL, 200, MACHINE },
		{ "PATCH", "/vm", NULL, 204, NULL },
		{ "PUT", "/snapshot/create", NULL, 400, FAULT("disk on fire") },
	};
	static const struct answer pause_fault[] = {
		{ "GET", "/", NULL, 200, RUNNING },
		{ "GET", "/machine-config", NULL, 200, MACHINE },
		{ "PATCH", "/vm", "Paused", 400, FAULT("cannot pause") },
		{ "PATCH", "/vm", "Resumed", 204, NULL },
	};
	static const struct answer stock[] = {
		{ "GET", "/", NULL, 200, RUNNING },
		{ "GET", "/machine-config", NULL, 200, MACHINE },
		{ "PUT", "/uffd/wp", NULL, 400,
		  FAULT("Invalid request method and/or path: PUT uffd.") },
		{ "PUT", "/snapshot/create", NULL, 400, FAULT("unknown variant `VmstateOnly`") },
	};
	struct error err = ERROR_INIT;
	char seen[2048], buf[32];
	struct vmm *v = NULL;
	struct branch *b = NULL;
	int r;

	if (!mkdtemp(tmpdir))
		tap_skip_all("cannot create a temporary directory");
	atexit(cleanup);

	expect("not-started", not_started, ARRAY_SIZE(not_started), BRANCH_MODE_FULL, -EINVAL,
	       "the VM is not started (state \"Not started\")", NULL);
	expect("mc-fault", mc_fault, ARRAY_SIZE(mc_fault), BRANCH_MODE_FULL, -EREMOTEIO,
	       "GET /machine-config: no machine here", NULL);
	expect("snapshot-fault", snapshot_fault, ARRAY_SIZE(snapshot_fault), BRANCH_MODE_FULL,
	       -EREMOTEIO, "PUT /snapshot/create Full: disk on fire",
	       "PATCH /vm {\"state\":\"Resumed\"}");
	expect("pause-fault", pause_fault, ARRAY_SIZE(pause_fault), BRANCH_MODE_FULL, -EREMOTEIO,
	       "pausing the VM: cannot pause", "PATCH /vm {\"state\":\"Resumed\"}");
	expect("stock-live", stock, ARRAY_SIZE(stock), BRANCH_MODE_LIVE, -EOPNOTSUPP,
	       "live mode forced but the VMM lacks PUT /uffd/wp (stock Firecracker?)", NULL);

	r = take("dead", not_started, 1, BRANCH_MODE_FULL, true, &err, seen, sizeof(seen));
	tap_ok(r == -ESRCH && !strcmp(error_msg(&err), "the VMM is not running") && !seen[0],
	       "dead: %d: %s", r, error_msg(&err));
	r = take("no-err", mc_fault, ARRAY_SIZE(mc_fault), BRANCH_MODE_FULL, false, NULL, seen,
		 sizeof(seen));
	TAP_CHECK(r == -EREMOTEIO);

	return tap_done();
}
