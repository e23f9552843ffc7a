// nodelxd-attach [--gate FD] NAME LXCPATH UID GID CWD NENV [K=V ...] -- COMMAND [ARG ...]
// Runs COMMAND inside a running container through the liblxc API, the way LXD's forkexec
// does: every namespace, the container's cgroups, its LSM and capability bounds, as UID:GID,
// with exactly the K=V environment, in CWD (or "/" when CWD cannot be entered). Its stdio is
// this program's. When stdin is a terminal, the command gets it as its controlling terminal in
// a session of its own (as LXD's forkexec gives it), so ^C and window-size changes reach the
// command and not this program. Exits with the command's status, or 128+N when signal N killed it.
// With --gate, the attached process waits inside the container until one byte arrives on FD
// before it runs COMMAND, and gives up without running it on end-of-file: the daemon attaches
// while the client is still connecting its websockets, and lets the command go once they are.
#define _GNU_SOURCE
#include <errno.h>
#include <lxc/attach_options.h>
#include <lxc/lxccontainer.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <unistd.h>

struct command {
	const char *cwd;
	char **argv;
	int gate;
};

// Runs in the attached process, inside the container.
static int exec_command(void *data) {
	struct command *cmd = data;
	if (cmd->gate >= 0) {
		char go;
		ssize_t n;
		while ((n = read(cmd->gate, &go, 1)) < 0 && errno == EINTR)
			;
		if (n != 1)
			_exit(1);
		close(cmd->gate);
	}
	if (isatty(STDIN_FILENO)) {
		setsid();
		ioctl(STDIN_FILENO, TIOCSCTTY, 0);
	}
	if (chdir(cmd->cwd) < 0 && chdir("/") < 0)
		return 1;
	execvp(cmd->argv[0], cmd->argv);
	return errno == ENOENT ? 127 : 126;
}

static int parse_id(const char *s, long *out) {
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || *end || end == s || v < -1)
		return -1;
	*out = v;
	return 0;
}

int main(int argc, char **argv) {
	long uid, gid, nenv, gate = -1;
	if (argc > 2 && strcmp(argv[1], "--gate") == 0) {
		if (parse_id(argv[2], &gate) || gate < 3) {
			fprintf(stderr, "nodelxd-attach: --gate needs a file descriptor above 2\n");
			return 2;
		}
		argv[2] = argv[0];
		argv += 2;
		argc -= 2;
	}
	if (argc < 9 || parse_id(argv[3], &uid) || parse_id(argv[4], &gid) || parse_id(argv[6], &nenv) || nenv < 0 || 7 + nenv + 1 >= argc || strcmp(argv[7 + nenv], "--") != 0) {
		fprintf(stderr, "usage: nodelxd-attach [--gate FD] NAME LXCPATH UID GID CWD NENV [K=V ...] -- COMMAND [ARG ...]\n");
		return 2;
	}
	char **env = calloc(nenv + 1, sizeof(char *));
	if (!env)
		return 1;
	for (long i = 0; i < nenv; i++)
		env[i] = argv[7 + i];
	struct command cmd = {.cwd = argv[5], .argv = &argv[8 + nenv], .gate = (int)gate};

	struct lxc_container *c = lxc_container_new(argv[1], argv[2]);
	if (!c || !c->is_running(c)) {
		fprintf(stderr, "Container %s is not running\n", argv[1]);
		return 1;
	}
	if (isatty(STDIN_FILENO)) {
		// Hand the terminal over: giving it up as session leader hangs up our own group once.
		signal(SIGHUP, SIG_IGN);
		ioctl(STDIN_FILENO, TIOCNOTTY);
		signal(SIGHUP, SIG_DFL);
	}
	lxc_attach_options_t opts = LXC_ATTACH_OPTIONS_DEFAULT;
	opts.env_policy = LXC_ATTACH_CLEAR_ENV;
	opts.extra_env_vars = env;
	opts.uid = (uid_t)uid;
	opts.gid = (gid_t)gid;
	pid_t pid;
	if (c->attach(c, exec_command, &cmd, &opts, &pid) < 0) {
		fprintf(stderr, "Failed to attach to container %s\n", argv[1]);
		lxc_container_put(c);
		return 1;
	}
	lxc_container_put(c);
	int status;
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return 1;
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return WEXITSTATUS(status);
}
