// Idmapped mounts: can this kernel idmap a mount of the filesystem holding `path` (LXD's
// idmap.CanIdmapMount), and does the liblxc here know `idmap=container` mount entries
// (its "idmapped_mounts_v2" API extension).
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/mount.h>
#include <node_api.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef MOUNT_ATTR_IDMAP
#define MOUNT_ATTR_IDMAP 0x00100000
#endif

struct attr_v0 {
  __u64 attr_set;
  __u64 attr_clr;
  __u64 propagation;
  __u64 userns_fd;
};

static int write_file(const char *path, const char *text) {
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  ssize_t n = write(fd, text, strlen(text));
  close(fd);
  return n == (ssize_t)strlen(text) ? 0 : -1;
}

/* 0 when an idmapped clone of `path`'s mount could be made, else an errno. */
static int try_idmap(const char *path) {
  int sync_pipe[2];
  if (pipe2(sync_pipe, O_CLOEXEC) < 0) return errno;
  pid_t pid = fork();
  if (pid < 0) {
    int e = errno;
    close(sync_pipe[0]);
    close(sync_pipe[1]);
    return e;
  }
  if (pid == 0) {
    // A user namespace that only exists to lend its map; wait until the parent is done.
    char c;
    close(sync_pipe[1]);
    if (unshare(CLONE_NEWUSER) < 0) _exit(1);
    while (read(sync_pipe[0], &c, 1) < 0 && errno == EINTR) {
    }
    _exit(0);
  }
  close(sync_pipe[0]);
  int err = 0;
  char buf[64];
  // The child must have unshared before its map can be written: retry briefly.
  for (int i = 0; i < 1000; i++) {
    snprintf(buf, sizeof buf, "/proc/%d/uid_map", pid);
    if (write_file(buf, "0 1000000 65536\n") == 0) break;
    if (i == 999) err = errno ? errno : EINVAL;
    usleep(1000);
  }
  int ns = -1, tree = -1;
  if (!err) {
    snprintf(buf, sizeof buf, "/proc/%d/setgroups", pid);
    write_file(buf, "deny\n");
    snprintf(buf, sizeof buf, "/proc/%d/gid_map", pid);
    if (write_file(buf, "0 1000000 65536\n") < 0) err = errno;
  }
  if (!err) {
    snprintf(buf, sizeof buf, "/proc/%d/ns/user", pid);
    ns = open(buf, O_RDONLY | O_CLOEXEC);
    if (ns < 0) err = errno;
  }
  if (!err) {
    tree = (int)syscall(SYS_open_tree, AT_FDCWD, path, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
    if (tree < 0) err = errno;
  }
  if (!err) {
    struct attr_v0 attr = {.attr_set = MOUNT_ATTR_IDMAP, .userns_fd = (__u64)ns};
    if (syscall(SYS_mount_setattr, tree, "", AT_EMPTY_PATH, &attr, sizeof attr) < 0) err = errno;
  }
  if (tree >= 0) close(tree);  // the detached clone goes with its last fd
  if (ns >= 0) close(ns);
  close(sync_pipe[1]);
  while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
  }
  return err;
}

/** idmapMountError(path): "" when the filesystem of `path` can be idmapped here, else the errno text. */
napi_value idmap_mount_error(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], out;
  char path[4096];
  size_t len;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 1 || napi_get_value_string_utf8(env, argv[0], path, sizeof path, &len) != napi_ok || len >= sizeof path - 1) {
    napi_throw_type_error(env, NULL, "idmapMountError(path: string)");
    return NULL;
  }
  int err = try_idmap(path);
  const char *text = err ? strerror(err) : "";
  napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &out);
  return out;
}

/** liblxcHasExtension(name): whether the installed liblxc reports the API extension. */
napi_value liblxc_has_extension(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], out;
  char name[256];
  size_t len;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 1 || napi_get_value_string_utf8(env, argv[0], name, sizeof name, &len) != napi_ok) {
    napi_throw_type_error(env, NULL, "liblxcHasExtension(name: string)");
    return NULL;
  }
  bool has = false;
  void *lib = dlopen("liblxc.so.1", RTLD_NOW | RTLD_LOCAL);
  if (lib) {
    bool (*fn)(const char *) = (bool (*)(const char *))dlsym(lib, "lxc_has_api_extension");
    if (fn) has = fn(name);
    dlclose(lib);
  }
  napi_get_boolean(env, has, &out);
  return out;
}

/** liblxcVersion(): lxc_get_version() of the installed liblxc (as LXD's liblxc.Version()), null without one. */
napi_value liblxc_version(napi_env env, napi_callback_info info) {
  napi_value out;
  void *lib = dlopen("liblxc.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    napi_get_null(env, &out);
    return out;
  }
  const char *(*fn)(void) = (const char *(*)(void))dlsym(lib, "lxc_get_version");
  const char *version = fn ? fn() : NULL;
  if (version) napi_create_string_utf8(env, version, NAPI_AUTO_LENGTH, &out);
  else napi_get_null(env, &out);
  dlclose(lib);
  return out;
}

/**
 * idmappedBind(source, pid, target, recursive): bind `source` onto the existing `target`
 * through the user namespace of process `pid` (files owned by host id H appear as the ids
 * that namespace maps H to). Throws the errno text of the failing step.
 */
napi_value idmapped_bind(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  char source[4096], target[4096], buf[64];
  size_t len;
  int32_t pid;
  bool recursive = false;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 4 || napi_get_value_string_utf8(env, argv[0], source, sizeof source, &len) != napi_ok || len >= sizeof source - 1 ||
      napi_get_value_int32(env, argv[1], &pid) != napi_ok || napi_get_value_string_utf8(env, argv[2], target, sizeof target, &len) != napi_ok ||
      len >= sizeof target - 1 || napi_get_value_bool(env, argv[3], &recursive) != napi_ok || pid <= 0) {
    napi_throw_type_error(env, NULL, "idmappedBind(source: string, pid: number, target: string, recursive: boolean)");
    return NULL;
  }
  const char *step = "open userns";
  int err = 0;
  snprintf(buf, sizeof buf, "/proc/%d/ns/user", pid);
  int ns = open(buf, O_RDONLY | O_CLOEXEC);
  int tree = -1;
  if (ns < 0) err = errno;
  if (!err) {
    step = "open_tree";
    tree = (int)syscall(SYS_open_tree, AT_FDCWD, source, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | (recursive ? AT_RECURSIVE : 0));
    if (tree < 0) err = errno;
  }
  if (!err) {
    step = "mount_setattr";
    struct attr_v0 attr = {.attr_set = MOUNT_ATTR_IDMAP, .userns_fd = (__u64)ns};
    if (syscall(SYS_mount_setattr, tree, "", AT_EMPTY_PATH | (recursive ? AT_RECURSIVE : 0), &attr, sizeof attr) < 0) err = errno;
  }
  if (!err) {
    step = "move_mount";
    if (syscall(SYS_move_mount, tree, "", AT_FDCWD, target, MOVE_MOUNT_F_EMPTY_PATH) < 0) err = errno;
  }
  if (tree >= 0) close(tree);
  if (ns >= 0) close(ns);
  if (err) {
    char msg[256];
    snprintf(msg, sizeof msg, "%s: %s", step, strerror(err));
    napi_throw_error(env, NULL, msg);
  }
  return NULL;
}
