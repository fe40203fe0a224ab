/* SPDX-License-Identifier: MIT
 * http.c — the transport of the Firecracker client: one keep-alive HTTP/1.1
 * connection to a VMM's AF_UNIX API socket, driven by a private libuv loop so
 * that every call is synchronous for the caller and bounded by a timeout.
 *
 * The loop watches the socket with a uv_poll_t and bounds the call with a
 * uv_timer_t; the bytes themselves move with send(MSG_NOSIGNAL)/recv, so a VMM
 * that went away gives -EPIPE instead of a SIGPIPE that would kill the caller
 * (uv_write uses write(2), which raises it), and so we know exactly how many
 * bytes of a request were handed to the peer.
 *
 * Connection rules:
 * - The socket is connected lazily by the first call and kept afterwards.
 * - Before a request goes out on a kept connection we look at it: an idle
 *   connection that is readable has been closed by the VMM (or holds bytes
 *   nobody asked for), so it is replaced by a fresh one. If the very first
 *   send on a kept connection fails with EPIPE/ECONNRESET and not one byte was
 *   delivered, the VMM closed it in between: we reconnect, once. A request of
 *   which any byte was delivered is never sent again (PATCH /vm must not run
 *   twice).
 * - Any failure (timeout, EOF, a malformed or oversized answer, bytes beyond
 *   the answer) closes the connection; the next call reconnects. After
 *   -ETIMEDOUT the effect of the call is unknown: the VMM may still execute it.
 */
#include <assert.h>
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <uv.h>
/* <uv.h> pulls in <sys/param.h>, whose MIN/MAX macro.h defines again. */
#undef MIN
#undef MAX
#include "common/error.h"
#include "common/macro.h"
#include "fc/fc.h"
#include "fc/internal.h"

#define RBUF_MAX ((size_t)FC_MAX_HEADER_BYTES + FC_MAX_BODY_BYTES)

struct call {
	const char *method;
	const char *path;
	const char *req;
	size_t req_len;
	size_t sent;
	struct fc_response *resp;
	unsigned timeout_ms;
	int r;
	bool done;
	bool drop;		/* close the connection after this call */
};

struct fc_client {
	char *socket_path;
	unsigned timeout_ms;
	uv_loop_t loop;
	uv_timer_t timer;
	uv_poll_t poll;
	bool poll_live;		/* poll is initialised on fd and not yet closed */
	int fd;			/* -1: not connected */
	char *rbuf;
	size_t rlen, rcap;
	struct call *call;	/* the call in flight, NULL between calls */
	char last_error[1024];
};

int fc__set_error(struct fc_client *c, int r, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(c->last_error, sizeof(c->last_error), fmt, ap);
	va_end(ap);
	/* It may quote the VMM (its fault text, a raw body) and goes to logs. */
	string_sanitize(c->last_error);
	return r;
}

static void poll_closed(uv_handle_t *h)
{
	struct fc_client *c = h->data;

	c->poll_live = false;
}

static void disconnect(struct fc_client *c)
{
	if (c->poll_live) {
		uv_close((uv_handle_t *)&c->poll, poll_closed);
		while (c->poll_live)
			uv_run(&c->loop, UV_RUN_ONCE);
	}
	c->fd = safe_close(c->fd);
	c->rlen = 0;
}

static int connect_socket(struct fc_client *c)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	_cleanup_close_ int fd = -1;
	int r;

	strcpy(sa.sun_path, c->socket_path); /* length checked in fc_client_new */
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return fc__set_error(c, -errno, "socket: %s", strerror(errno));
	do
		r = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
	while (r < 0 && errno == EINTR);
	/* AF_UNIX connects at once; EAGAIN means the listen backlog is full. */
	if (r < 0)
		return fc__set_error(c, -errno, "connect %s: %s", c->socket_path, strerror(errno));
	r = uv_poll_init(&c->loop, &c->poll, fd);
	if (r < 0)
		return fc__set_error(c, r, "uv_poll_init: %s", uv_strerror(r));
	c->poll.data = c;
	c->poll_live = true;
	c->fd = TAKE_FD(fd);
	c->rlen = 0;
	return 0;
}

/* An idle kept connection must have nothing to read: readable means EOF from
 * a VMM that closed it, an error, or stray bytes; none of them is usable. */
static bool connection_is_stale(struct fc_client *c)
{
	struct pollfd p = { .fd = c->fd, .events = POLLIN | POLLRDHUP };

	return poll(&p, 1, 0) != 0;
}

static void finish(struct fc_client *c, int r)
{
	c->call->r = r;
	c->call->done = true;
}

/* Send what is left of the request. Returns 0 when all is sent or the socket
 * is full, -errno on failure. */
static int send_more(struct fc_client *c)
{
	struct call *k = c->call;

	while (k->sent < k->req_len) {
		ssize_t n = send(c->fd, k->req + k->sent, k->req_len - k->sent,
				 MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return 0;
		if (n < 0)
			return -errno;
		k->sent += (size_t)n;
	}
	return 0;
}

static int grow_rbuf(struct fc_client *c)
{
	size_t cap = c->rcap ? c->rcap * 2 : 4096;
	char *p;

	if (c->rcap >= RBUF_MAX)
		return -EFBIG;
	cap = MIN(cap, RBUF_MAX);
	p = realloc(c->rbuf, cap);
	if (!p)
		return -ENOMEM;
	c->rbuf = p;
	c->rcap = cap;
	return 0;
}

/* Read what is there and try to parse. Returns 1 when the answer is complete,
 * 0 when more is needed, -errno on failure (last_error set). */
static int receive_more(struct fc_client *c)
{
	struct call *k = c->call;
	ssize_t n, used;
	int r;

	for (;;) {
		if (c->rlen == c->rcap) {
			r = grow_rbuf(c);
			if (r < 0)
				return fc__set_error(c, r, "%s %s: answer too large", k->method,
						     k->path);
		}
		n = recv(c->fd, c->rbuf + c->rlen, c->rcap - c->rlen, MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return 0;
		if (n < 0)
			return fc__set_error(c, -errno, "%s %s: receiving the answer: %s",
					     k->method, k->path, strerror(errno));
		if (n == 0)
			return fc__set_error(
			    c, -ECONNRESET, "%s %s: the VMM closed the connection %s", k->method,
			    k->path, c->rlen ? "in the middle of its answer" : "before answering");
		c->rlen += (size_t)n;
		used = fc_parse_response(c->rbuf, c->rlen, k->resp);
		if (used == -EFBIG)
			return fc__set_error(c, -EFBIG, "%s %s: answer too large", k->method,
					     k->path);
		if (used < 0)
			return fc__set_error(c, (int)used, "%s %s: malformed HTTP answer",
					     k->method, k->path);
		if (used > 0) {
			/* Bytes beyond the answer were never asked for: drop the connection
			 * (after the loop: no uv_run from inside a callback). */
			k->drop = (size_t)used != c->rlen;
			c->rlen = 0;
			return 1;
		}
	}
}

static void on_poll(uv_poll_t *h, int status, int events)
{
	struct fc_client *c = h->data;
	struct call *k = c->call;
	int r;

	if (!k || k->done)
		return;
	if (status < 0) {
		/* libuv reports POLLERR as UV_EBADF: ask the socket what happened
		 * (ECONNRESET when the VMM died with our request unread). */
		int err = 0;
		socklen_t sl = sizeof(err);

		if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &sl) == 0 && err > 0)
			finish(c, fc__set_error(c, -err, "%s %s: %s", k->method, k->path,
						strerror(err)));
		else if (k->sent == k->req_len && (r = receive_more(c)) != 0)
			finish(c, r < 0 ? r : 0);
		else
			finish(c, fc__set_error(c, status, "%s %s: %s", k->method, k->path,
						uv_strerror(status)));
		return;
	}
	if (k->sent < k->req_len && (events & UV_WRITABLE)) {
		r = send_more(c);
		if (r < 0) {
			finish(c, fc__set_error(c, r, "%s %s: sending the request: %s", k->method,
						k->path, strerror(-r)));
			return;
		}
		if (k->sent == k->req_len)
			uv_poll_start(&c->poll, UV_READABLE, on_poll);
	}
	if (events & UV_READABLE) {
		r = receive_more(c);
		if (r != 0)
			finish(c, r < 0 ? r : 0);
	}
}

static void on_timeout(uv_timer_t *t)
{
	struct fc_client *c = t->data;
	struct call *k = c->call;

	if (k && !k->done)
		finish(c, fc__set_error(c, -ETIMEDOUT, "timed out after %u ms waiting for %s %s",
					k->timeout_ms, k->method, k->path));
}

/* Connect if needed and hand the first bytes over, reconnecting once when a
 * kept connection turns out to be closed before anything was delivered. */
static int start_send(struct fc_client *c)
{
	struct call *k = c->call;
	bool kept = false;
	int r;

	if (c->fd >= 0) {
		if (connection_is_stale(c))
			disconnect(c);
		else
			kept = true;
	}
	for (;;) {
		if (c->fd < 0) {
			r = connect_socket(c);
			if (r < 0)
				return r;
		}
		r = send_more(c);
		if (r >= 0)
			return 0;
		if (kept && k->sent == 0 && (r == -EPIPE || r == -ECONNRESET)) {
			disconnect(c);
			kept = false;
			continue;
		}
		return fc__set_error(c, r, "%s %s: sending the request: %s", k->method, k->path,
				     strerror(-r));
	}
}

static bool token_is_valid(const char *s)
{
	if (!s || !*s)
		return false;
	for (; *s; s++)
		if (*s < 'A' || *s > 'Z')
			return false;
	return true;
}

/* An origin-form target: '/', then printable ASCII without spaces. */
static bool target_is_valid(const char *s)
{
	if (!s || s[0] != '/' || strlen(s) > 1024)
		return false;
	for (; *s; s++)
		if (*s <= ' ' || *s >= 0x7f)
			return false;
	return true;
}

static int build_request(const char *method, const char *path, const char *body, char **ret,
			 size_t *ret_len)
{
	char *s = NULL;
	int n;

	if (body)
		n = asprintf(&s,
			     "%s %s HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\n"
			     "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
			     method, path, strlen(body), body);
	else
		n = asprintf(&s, "%s %s HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\n\r\n",
			     method, path);
	if (n < 0)
		return -ENOMEM;
	*ret = s;
	*ret_len = (size_t)n;
	return 0;
}

int fc_request(struct fc_client *c, const char *method, const char *path, const char *json_body,
	       unsigned timeout_ms, struct fc_response *resp)
{
	struct fc_response tmp = { 0 };
	_cleanup_free_ char *req = NULL;
	struct call k = { .method = method, .path = path };
	int r;

	if (!token_is_valid(method) || !target_is_valid(path))
		return fc__set_error(c, -EINVAL, "invalid request line");
	c->last_error[0] = '\0';
	r = build_request(method, path, json_body, &req, &k.req_len);
	if (r < 0)
		return fc__set_error(c, r, "out of memory");
	k.req = req;
	k.resp = &tmp;
	k.timeout_ms = timeout_ms ? timeout_ms : c->timeout_ms;
	c->call = &k;

	r = start_send(c);
	if (r < 0) {
		finish(c, r);
	} else {
		/* The private loop only runs during calls: its cached clock is as
		 * old as the last call. Without this, a call made after an idle
		 * period longer than the timeout times out at once. */
		uv_update_time(&c->loop);
		uv_timer_start(&c->timer, on_timeout, k.timeout_ms, 0);
		r = uv_poll_start(&c->poll,
				  k.sent < k.req_len ? UV_WRITABLE | UV_READABLE : UV_READABLE,
				  on_poll);
		if (r < 0)
			finish(c, fc__set_error(c, r, "%s %s: uv_poll_start: %s", method, path,
						uv_strerror(r)));
		while (!k.done)
			uv_run(&c->loop, UV_RUN_ONCE);
		uv_timer_stop(&c->timer);
		if (c->poll_live)
			uv_poll_stop(&c->poll);
	}
	c->call = NULL;
	/* An answer before the whole request went out (e.g. a 400 cutting a body
	 * short) leaves the rest of it in flight: the connection is unusable. */
	if (k.sent < k.req_len)
		k.drop = true;
	if (k.r < 0 || k.drop)
		disconnect(c);
	if (k.r < 0) {
		fc_response_clear(&tmp);
		return k.r;
	}
	if (resp)
		*resp = tmp;
	else
		fc_response_clear(&tmp);
	return 0;
}

int fc_call(struct fc_client *c, const char *method, const char *path, const char *json_body,
	    unsigned timeout_ms, struct fc_response *resp)
{
	struct fc_response tmp = { 0 }, *rp = resp ? resp : &tmp;
	_cleanup_free_ char *text = NULL;
	int r;

	r = fc_request(c, method, path, json_body, timeout_ms, rp);
	if (r < 0)
		return r;
	if (rp->status >= 200 && rp->status < 300) {
		fc_response_clear(&tmp);
		return 0;
	}
	text = fc_error_text(rp->body, rp->body_len);
	if (text)
		fc__set_error(c, 0, "%s", text);
	else
		fc__set_error(c, 0, "%s %s: HTTP status %d%s%.200s", method, path, rp->status,
			      rp->body ? ": " : "", rp->body ? rp->body : "");
	fc_response_clear(&tmp);
	return -EREMOTEIO;
}

int fc_client_new(const char *api_socket, struct fc_client **ret)
{
	struct fc_client *c;
	int r;

	if (!api_socket || !*api_socket ||
	    strlen(api_socket) >= sizeof(((struct sockaddr_un *)NULL)->sun_path))
		return api_socket && *api_socket ? -ENAMETOOLONG : -EINVAL;
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->fd = -1;
	c->timeout_ms = FC_DEFAULT_TIMEOUT_MS;
	c->socket_path = strdup(api_socket);
	if (!c->socket_path) {
		free(c);
		return -ENOMEM;
	}
	r = uv_loop_init(&c->loop);
	if (r < 0) {
		free(c->socket_path);
		free(c);
		return r;
	}
	uv_timer_init(&c->loop, &c->timer);
	c->timer.data = c;
	*ret = c;
	return 0;
}

struct fc_client *fc_client_free(struct fc_client *c)
{
	int r;

	if (!c)
		return NULL;
	disconnect(c);
	uv_close((uv_handle_t *)&c->timer, NULL);
	uv_run(&c->loop, UV_RUN_DEFAULT);
	r = uv_loop_close(&c->loop);
	assert(r == 0); /* every handle is closed above; UV_EBUSY would be a bug here */
	(void)r;
	free(c->rbuf);
	free(c->socket_path);
	free(c);
	return NULL;
}

void fc_client_set_timeout(struct fc_client *c, unsigned timeout_ms)
{
	c->timeout_ms = timeout_ms ? timeout_ms : FC_DEFAULT_TIMEOUT_MS;
}

const char *fc_client_socket(const struct fc_client *c) { return c->socket_path; }

const char *fc_client_last_error(const struct fc_client *c) { return c->last_error; }
