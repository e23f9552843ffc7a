// nodelxd-rsync: the two ends of a migration's rsync without a shell (src/migration/rsync-stream.ts).
//
//   nodelxd-rsync relay
//     The sending rsync's remote shell (`rsync -e '.../nodelxd-rsync relay'`): what rsync writes
//     to it goes to fd 3, what comes on fd 3 goes to rsync. fd 3 is a unix stream socket whose
//     other end the daemon holds; the daemon shuts its side down when the peer's stream ends,
//     and the relay then exits (as LXD's `lxd netcat`). One small process where a shell with two
//     `cat`s took three.
//
//   nodelxd-rsync jail ROOT TARGET RSYNC-ARGS...
//     The receiving rsync, confined: in a private mount namespace, a tmpfs at ROOT holding a
//     read-only /usr (and the bin, lib, lib64, sbin links to it) and TARGET at /t; chroot to ROOT,
//     then exec `rsync RSYNC-ARGS` (found on PATH). Whatever the peer's file list says, links it
//     makes and follows reach nothing of the host. Done with system calls, where a shell script
//     spawned mount, mkdir and ln nine times.
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define PEER_FD 3
#define BUF_SIZE (256 * 1024)

static void die(const char *what, const char *arg) {
  fprintf(stderr, "nodelxd-rsync: %s%s%s: %s\n", what, arg ? " " : "", arg ? arg : "", strerror(errno));
  exit(1);
}

// Copy `in` to `out` until end of file; false on an error.
static int copy(int in, int out) {
  static char buf[BUF_SIZE];
  for (;;) {
    ssize_t n = read(in, buf, sizeof buf);
    if (n == 0) return 1;
    if (n < 0) {
      if (errno == EINTR) continue;
      return 0;
    }
    for (ssize_t off = 0; off < n;) {
      ssize_t w = write(out, buf + off, (size_t)(n - off));
      if (w < 0) {
        if (errno == EINTR) continue;
        return 0;
      }
      off += w;
    }
  }
}

static int relay(void) {
  // A peer gone mid-stream must fail the write, not kill the relay silently.
  signal(SIGPIPE, SIG_IGN);
  pid_t pid = fork();
  if (pid < 0) die("fork", NULL);
  if (pid == 0) {
    // rsync's bytes to the daemon; at rsync's end of output, end our side of the socket.
    int ok = copy(STDIN_FILENO, PEER_FD);
    shutdown(PEER_FD, SHUT_WR);
    _exit(ok ? 0 : 1);
  }
  close(STDIN_FILENO);
  // The peer's bytes to rsync, until the daemon ends the stream.
  int ok = copy(PEER_FD, STDOUT_FILENO);
  close(STDOUT_FILENO);
  return ok ? 0 : 1;
}

static void path_in(char *out, const char *root, const char *name) {
  if (snprintf(out, PATH_MAX, "%s/%s", root, name) >= PATH_MAX) {
    errno = ENAMETOOLONG;
    die("path", root);
  }
}

static int jail(const char *root, const char *target, char **rsync_args) {
  char usr[PATH_MAX], t[PATH_MAX], link[PATH_MAX], src[PATH_MAX];
  if (root[0] != '/' || target[0] != '/') {
    errno = EINVAL;
    die("absolute paths needed", NULL);
  }
  if (unshare(CLONE_NEWNS) < 0) die("unshare", NULL);
  if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) die("make / private", NULL);
  if (mount("nodelxd-rsync", root, "tmpfs", 0, "mode=0755,size=1m") < 0) die("mount tmpfs on", root);
  path_in(usr, root, "usr");
  path_in(t, root, "t");
  if (mkdir(usr, 0755) < 0) die("mkdir", usr);
  if (mkdir(t, 0755) < 0) die("mkdir", t);
  if (mount("/usr", usr, NULL, MS_BIND, NULL) < 0) die("bind /usr on", usr);
  if (mount(NULL, usr, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL) < 0) die("remount read-only", usr);
  if (mount(target, t, NULL, MS_BIND, NULL) < 0) die("bind", target);
  static const char *const dirs[] = {"bin", "lib", "lib64", "sbin"};
  for (size_t i = 0; i < sizeof dirs / sizeof *dirs; i++) {
    struct stat st;
    path_in(src, "/usr", dirs[i]);
    if (stat(src, &st) < 0) continue;
    path_in(src, "usr", dirs[i]);
    path_in(link, root, dirs[i]);
    if (symlink(src, link) < 0) die("symlink", link);
  }
  if (chroot(root) < 0) die("chroot", root);
  if (chdir("/") < 0) die("chdir", "/");
  rsync_args[0] = "rsync";
  execvp("rsync", rsync_args);
  die("exec", "rsync");
  return 1;
}

int main(int argc, char **argv) {
  // Anything rsync appends to the remote shell's command line (host, remote command) is ignored.
  if (argc >= 2 && strcmp(argv[1], "relay") == 0) return relay();
  // argv[3] (TARGET, already read) becomes rsync's argv[0].
  if (argc >= 4 && strcmp(argv[1], "jail") == 0) return jail(argv[2], argv[3], argv + 3);
  fprintf(stderr, "usage: nodelxd-rsync relay | nodelxd-rsync jail ROOT TARGET RSYNC-ARGS...\n");
  return 2;
}
