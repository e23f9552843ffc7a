// Starting the liblxc helpers without forking the daemon: posix_spawn(3) (glibc: clone with
// CLONE_VM|CLONE_VFORK) costs the same whatever the daemon's size, where Node's fork copies the
// page tables of a ~100 MB process with the event loop blocked for milliseconds. The exit is
// watched through a pidfd on the event loop; libuv reaps only its own children (by pid), so
// these are ours to reap.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <node_api.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

napi_value native_throw_errno(napi_env env, int err, const char *what);
char *native_get_string(napi_env env, napi_value v);

// socketPair() -> [parent, child]: a connected unix stream pair, both ends close-on-exec.
napi_value socket_pair(napi_env env, napi_callback_info info) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) return native_throw_errno(env, errno, "socketpair");
  napi_value out, v;
  napi_create_array_with_length(env, 2, &out);
  for (uint32_t i = 0; i < 2; i++) {
    napi_create_int32(env, sv[i], &v);
    napi_set_element(env, out, i, v);
  }
  return out;
}

// peerCredentials(fd) -> [pid, uid, gid]: SO_PEERCRED of a connected unix socket (the guest
// API identifies its callers by it; pid is in the daemon's pid namespace).
napi_value peer_credentials(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  size_t argc = 1;
  int32_t fd;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1 || napi_get_value_int32(env, argv[0], &fd) != napi_ok)
    return native_throw_errno(env, EINVAL, "peerCredentials");
  struct ucred cred;
  socklen_t len = sizeof cred;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) return native_throw_errno(env, errno, "getsockopt(SO_PEERCRED)");
  napi_value out, v;
  napi_create_array_with_length(env, 3, &out);
  napi_create_int32(env, cred.pid, &v);
  napi_set_element(env, out, 0, v);
  napi_create_uint32(env, cred.uid, &v);
  napi_set_element(env, out, 1, v);
  napi_create_uint32(env, cred.gid, &v);
  napi_set_element(env, out, 2, v);
  return out;
}

struct exit_watch {
  uv_poll_t poll;
  int pidfd;
  napi_env env;
  napi_ref callback;
  napi_async_context context;
};

static void free_watch(uv_handle_t *handle) { free(handle->data); }

static void on_pidfd_readable(uv_poll_t *poll, int status, int events) {
  struct exit_watch *w = poll->data;
  siginfo_t si;
  memset(&si, 0, sizeof si);
  int r;
  do
    r = waitid(P_PIDFD, w->pidfd, &si, WEXITED | WNOHANG);
  while (r < 0 && errno == EINTR);
  if (r == 0 && si.si_pid == 0) return; // not exited yet
  // r < 0 (reaped elsewhere): reported with neither a code nor a signal.
  uv_poll_stop(poll);
  close(w->pidfd);
  napi_env env = w->env;
  napi_handle_scope scope;
  napi_open_handle_scope(env, &scope);
  napi_value callback, resource, argv[2];
  napi_get_reference_value(env, w->callback, &callback);
  napi_get_null(env, &argv[0]);
  napi_get_null(env, &argv[1]);
  if (si.si_code == CLD_EXITED)
    napi_create_int32(env, si.si_status, &argv[0]);
  else if (si.si_code == CLD_KILLED || si.si_code == CLD_DUMPED)
    napi_create_int32(env, si.si_status, &argv[1]);
  napi_create_object(env, &resource);
  napi_make_callback(env, w->context, resource, callback, 2, argv, NULL);
  napi_delete_reference(env, w->callback);
  napi_async_destroy(env, w->context);
  napi_close_handle_scope(env, scope);
  uv_close((uv_handle_t *)poll, free_watch);
}

// A NULL-terminated copy of a JS string array, or NULL.
static char **strings_of(napi_env env, napi_value array, uint32_t *count) {
  if (napi_get_array_length(env, array, count) != napi_ok) return NULL;
  char **out = calloc(*count + 1, sizeof(char *));
  for (uint32_t i = 0; out && i < *count; i++) {
    napi_value v;
    if (napi_get_element(env, array, i, &v) != napi_ok || !(out[i] = native_get_string(env, v))) {
      for (uint32_t j = 0; j < i; j++) free(out[j]);
      free(out);
      return NULL;
    }
  }
  return out;
}

static void free_strings(char **s) {
  for (char **p = s; p && *p; p++) free(*p);
  free(s);
}

// spawn(path, argv, fds, cwd, env, onExit) -> pid. argv[0] is the name the program sees; the
// child's descriptor i is fds[i] (-1: /dev/null) and it has no others; signals start default
// and unblocked. onExit(code, signal) runs once, on the event loop.
napi_value spawn_process(napi_env env, napi_callback_info info) {
  napi_value argv[6];
  size_t argc = 6;
  napi_valuetype cb_type;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 6 || napi_typeof(env, argv[5], &cb_type) != napi_ok || cb_type != napi_function)
    return native_throw_errno(env, EINVAL, "spawn");
  uint32_t nargs = 0, nenv = 0, nfds = 0;
  char *path = native_get_string(env, argv[0]), *cwd = native_get_string(env, argv[3]);
  char **args = strings_of(env, argv[1], &nargs), **envp = strings_of(env, argv[4], &nenv);
  int fds[16], temp[16];
  int err = (!path || !cwd || !args || !envp || nargs == 0) ? EINVAL : 0;
  if (!err && (napi_get_array_length(env, argv[2], &nfds) != napi_ok || nfds > 16)) {
    err = EINVAL;
    nfds = 0;
  }
  for (uint32_t i = 0; i < nfds; i++) temp[i] = -1;
  for (uint32_t i = 0; !err && i < nfds; i++) {
    napi_value v;
    if (napi_get_element(env, argv[2], i, &v) != napi_ok || napi_get_value_int32(env, v, &fds[i]) != napi_ok) err = EINVAL;
    // A source numbered below nfds could be overwritten by an earlier dup2 in the child: move it up.
    else if (fds[i] >= 0 && (temp[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, (int)nfds)) < 0) err = errno;
  }
  pid_t pid = -1;
  if (!err) {
    posix_spawn_file_actions_t actions;
    posix_spawnattr_t attr;
    sigset_t all, none;
    sigfillset(&all);
    sigdelset(&all, SIGKILL);
    sigdelset(&all, SIGSTOP);
    // glibc's sigfillset leaves out its two internal signals (32, 33) and posix_spawn would
    // then leave them ignored in the child; set their bits directly so they start default too.
    for (int sig = 32; sig <= 33; sig++)
      all.__val[(sig - 1) / (8 * sizeof(unsigned long))] |= 1UL << ((sig - 1) % (8 * sizeof(unsigned long)));
    sigemptyset(&none);
    posix_spawn_file_actions_init(&actions);
    posix_spawnattr_init(&attr);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &all);
    for (uint32_t i = 0; i < nfds; i++) {
      if (temp[i] >= 0)
        posix_spawn_file_actions_adddup2(&actions, temp[i], (int)i);
      else
        posix_spawn_file_actions_addopen(&actions, (int)i, "/dev/null", O_RDWR, 0);
    }
    // Whatever the daemon inherited without close-on-exec stays out of helpers (and containers).
    posix_spawn_file_actions_addclosefrom_np(&actions, (int)nfds);
    posix_spawn_file_actions_addchdir_np(&actions, cwd);
    err = posix_spawn(&pid, path, &actions, &attr, args, envp);
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
  }
  for (uint32_t i = 0; i < nfds; i++)
    if (temp[i] >= 0) close(temp[i]);
  free(path);
  free(cwd);
  free_strings(args);
  free_strings(envp);
  if (err) return native_throw_errno(env, err, "spawn");

  struct exit_watch *w = calloc(1, sizeof *w);
  int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
  uv_loop_t *loop = NULL;
  napi_value name;
  if (!w || pidfd < 0 || napi_get_uv_event_loop(env, &loop) != napi_ok || uv_poll_init(loop, &w->poll, pidfd) != 0) {
    int e = pidfd < 0 ? errno : EIO;
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    if (pidfd >= 0) close(pidfd);
    free(w);
    return native_throw_errno(env, e, "watch spawned process");
  }
  w->pidfd = pidfd;
  w->env = env;
  w->poll.data = w;
  napi_create_reference(env, argv[5], 1, &w->callback);
  napi_create_string_utf8(env, "nodelxd:spawn", NAPI_AUTO_LENGTH, &name);
  napi_async_init(env, NULL, name, &w->context);
  uv_poll_start(&w->poll, UV_READABLE, on_pidfd_readable);
  napi_value out;
  napi_create_int32(env, pid, &out);
  return out;
}
