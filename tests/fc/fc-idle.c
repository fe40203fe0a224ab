/* SPDX-License-Identifier: MIT
 * fc-idle.t — a call made after the client sat idle for longer than its
 * timeout must still get its full timeout. The client's private libuv loop
 * only runs during calls, so its cached clock goes stale in between; this
 * once made every such call time out at once (seen as VMMs that "stalled"
 * for exactly the timeout on the branch after a long copy).
 */
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>
#include "fc/fc.h"
#include "tests/branch/minivm-proc.h"
#include "tests/tap.h"

int main(void)
{
	char dir[] = "/tmp/forkfs-fc-idle.XXXXXX";
	struct minivm_proc p = { 0 };
	struct fc_instance_info info;
	struct fc_client *c = NULL;
	int i, r;

	if (!getenv("MINIVM") || access(getenv("MINIVM"), X_OK) < 0)
		tap_skip_all("needs forkfs-minivm ($MINIVM)");
	if (!mkdtemp(dir) || minivm_spawn(dir, "idle", NULL, &p) < 0 ||
	    fc_client_new(p.sock, &c) < 0) {
		tap_ok(false, "set-up");
		goto out;
	}
	fc_client_set_timeout(c, 300);
	TAP_CHECK(fc_get_instance_info(c, &info) == 0);
	for (i = 0; i < 3; i++) {
		usleep(600 * 1000);	/* idle for twice the timeout */
		r = fc_get_instance_info(c, &info);
		tap_ok(r == 0, "a call after %d ms idle gets its answer (%d: %s)", 600, r,
		       r ? fc_client_last_error(c) : "ok");
	}
out:
	fc_client_free(c);
	minivm_kill(&p);
	unlink(p.out);
	rmdir(dir);
	return tap_done();
}
