// nodelxd-start NAME LXCPATH CONFIG
// Starts a container through the liblxc API, daemonized, the way LXD's forkstart does (so
// liblxc logs under its own "lxc" prefix rather than a tool's name), and prints init's pid
// once the container runs. The container's monitor outlives this program and the daemon.
#include <lxc/lxccontainer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
	if (argc != 4) {
		fprintf(stderr, "usage: nodelxd-start NAME LXCPATH CONFIG\n");
		return 2;
	}
	struct lxc_container *c = lxc_container_new(argv[1], argv[2]);
	if (!c) {
		fprintf(stderr, "Error initializing container for start\n");
		return 1;
	}
	c->clear_config(c);
	if (!c->load_config(c, argv[3])) {
		fprintf(stderr, "Failed to load config file %s\n", argv[3]);
		lxc_container_put(c);
		return 1;
	}
	free(c->configfile);
	c->configfile = strdup(argv[3]);
	c->want_daemonize(c, true);
	c->want_close_all_fds(c, true);
	if (!c->start(c, 0, NULL)) {
		fprintf(stderr, "The container failed to start\n");
		lxc_container_put(c);
		return 1;
	}
	printf("%d\n", c->init_pid(c));
	lxc_container_put(c);
	return 0;
}
