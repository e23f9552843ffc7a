// Pseudo-terminals for interactive exec, allocated in the container's own devpts instance the
// way LXD does (so `tty` inside names a /dev/pts/N the container can see): ptmx is opened
// through /proc/PID/root with RESOLVE_IN_ROOT, the peer through TIOCGPTPEER (no path lookup).
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <node_api.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <termios.h>
#include <unistd.h>

#ifndef TIOCGPTPEER
#define TIOCGPTPEER _IO('T', 0x41)
#endif

napi_value native_throw_errno(napi_env env, int err, const char *what);

static int int_args(napi_env env, napi_callback_info info, size_t n, int64_t *out) {
  napi_value argv[8];
  size_t argc = n;
  if (n > 8 || napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < n) return -1;
  for (size_t i = 0; i < n; i++)
    if (napi_get_value_int64(env, argv[i], &out[i]) != napi_ok) return -1;
  return 0;
}

// openPtyInRoot(pid, uid, gid, cols, rows) -> [master, slave]; the slave is owned by uid:gid.
napi_value open_pty_in_root(napi_env env, napi_callback_info info) {
  int64_t a[5];
  if (int_args(env, info, 5, a) || a[0] <= 0) return native_throw_errno(env, EINVAL, "openPtyInRoot");
  char root_path[64];
  snprintf(root_path, sizeof root_path, "/proc/%lld/root", (long long)a[0]);
  int root = open(root_path, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (root < 0) return native_throw_errno(env, errno, "open container root");
  struct open_how how = {.flags = O_RDWR | O_NOCTTY | O_CLOEXEC, .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS};
  int master = syscall(SYS_openat2, root, "/dev/pts/ptmx", &how, sizeof how);
  int err = master < 0 ? errno : 0;
  close(root);
  if (master < 0) return native_throw_errno(env, err, "open the container's /dev/pts/ptmx");
  int unlock = 0, slave = -1;
  struct winsize ws = {.ws_col = (unsigned short)a[3], .ws_row = (unsigned short)a[4]};
  if (ioctl(master, TIOCSPTLCK, &unlock) < 0 || (slave = ioctl(master, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC)) < 0 ||
      fchown(slave, (uid_t)a[1], (gid_t)a[2]) < 0 || fchmod(slave, 0620) < 0 || ioctl(master, TIOCSWINSZ, &ws) < 0) {
    err = errno;
    if (slave >= 0) close(slave);
    close(master);
    return native_throw_errno(env, err, "set up the container's pty");
  }
  napi_value out, m, s;
  napi_create_array_with_length(env, 2, &out);
  napi_create_int32(env, master, &m);
  napi_create_int32(env, slave, &s);
  napi_set_element(env, out, 0, m);
  napi_set_element(env, out, 1, s);
  return out;
}

// setWindowSize(fd, cols, rows)
napi_value set_window_size(napi_env env, napi_callback_info info) {
  int64_t a[3];
  if (int_args(env, info, 3, a)) return native_throw_errno(env, EINVAL, "setWindowSize");
  struct winsize ws = {.ws_col = (unsigned short)a[1], .ws_row = (unsigned short)a[2]};
  if (ioctl((int)a[0], TIOCSWINSZ, &ws) < 0) return native_throw_errno(env, errno, "TIOCSWINSZ");
  return NULL;
}
