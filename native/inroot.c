// Path resolution confined to a directory tree, for instance file transfer: every lookup
// goes through openat2(2) with RESOLVE_IN_ROOT, so symlinks, ".." and absolute targets can
// never leave the root, and RESOLVE_NO_MAGICLINKS refuses /proc/PID/fd-style jumps. The rest
// are thin *at(2) wrappers on directory fds that were resolved this way.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <node_api.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define CHECK(call)                                                            \
  do {                                                                         \
    if ((call) != napi_ok) {                                                   \
      napi_throw_error(env, NULL, "native argument error");                    \
      return NULL;                                                             \
    }                                                                          \
  } while (0)

static napi_value throw_errno(napi_env env, int err, const char *what) {
  char msg[512];
  const char *name = strerrorname_np(err);
  snprintf(msg, sizeof msg, "%s: %s", what, strerror(err));
  napi_value code, message, error, errnum;
  napi_create_string_utf8(env, name ? name : "EIO", NAPI_AUTO_LENGTH, &code);
  napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &message);
  napi_create_error(env, code, message, &error);
  napi_create_int32(env, -err, &errnum);
  napi_set_named_property(env, error, "errno", errnum);
  napi_set_named_property(env, error, "code", code);
  napi_throw(env, error);
  return NULL;
}

napi_value native_throw_errno(napi_env env, int err, const char *what) { return throw_errno(env, err, what); }
napi_value sealed_executable(napi_env env, napi_callback_info info);
napi_value open_pty_in_root(napi_env env, napi_callback_info info);
napi_value set_window_size(napi_env env, napi_callback_info info);
napi_value socket_pair(napi_env env, napi_callback_info info);
napi_value spawn_process(napi_env env, napi_callback_info info);
napi_value peer_credentials(napi_env env, napi_callback_info info);
napi_value ethtool_link_settings(napi_env env, napi_callback_info info);
napi_value btrfs_set_received_uuid(napi_env env, napi_callback_info info);
napi_value idmap_mount_error(napi_env env, napi_callback_info info);
napi_value liblxc_has_extension(napi_env env, napi_callback_info info);
napi_value liblxc_version(napi_env env, napi_callback_info info);
napi_value idmapped_bind(napi_env env, napi_callback_info info);
napi_value netns_links(napi_env env, napi_callback_info info);
napi_value read_small_files(napi_env env, napi_callback_info info);
napi_value release_idle_memory(napi_env env, napi_callback_info info);
napi_value watch_process(napi_env env, napi_callback_info info);
napi_value unwatch_process(napi_env env, napi_callback_info info);
napi_value process_exited(napi_env env, napi_callback_info info);

static int get_args(napi_env env, napi_callback_info info, size_t want, napi_value *argv) {
  size_t argc = want;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < want) return -1;
  return 0;
}

// Returns a malloc'd copy of a JS string argument.
static char *get_string(napi_env env, napi_value v) {
  size_t len = 0;
  if (napi_get_value_string_utf8(env, v, NULL, 0, &len) != napi_ok) return NULL;
  char *s = malloc(len + 1);
  if (!s) return NULL;
  if (napi_get_value_string_utf8(env, v, s, len + 1, &len) != napi_ok) {
    free(s);
    return NULL;
  }
  if (strlen(s) != len) {  // embedded NUL
    free(s);
    return NULL;
  }
  return s;
}

char *native_get_string(napi_env env, napi_value v) { return get_string(env, v); }

static napi_value int_result(napi_env env, int v) {
  napi_value out;
  napi_create_int32(env, v, &out);
  return out;
}

// openRoot(path) -> O_PATH directory fd
static napi_value open_root(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (get_args(env, info, 1, argv)) return throw_errno(env, EINVAL, "openRoot");
  char *path = get_string(env, argv[0]);
  if (!path) return throw_errno(env, EINVAL, "openRoot");
  int fd = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
  int err = errno;
  free(path);
  if (fd < 0) return throw_errno(env, err, "open root");
  return int_result(env, fd);
}

// openInRoot(rootfd, path, flags, mode) -> fd
static napi_value open_in_root(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  int32_t rootfd, flags, mode;
  if (get_args(env, info, 4, argv)) return throw_errno(env, EINVAL, "openInRoot");
  CHECK(napi_get_value_int32(env, argv[0], &rootfd));
  CHECK(napi_get_value_int32(env, argv[2], &flags));
  CHECK(napi_get_value_int32(env, argv[3], &mode));
  char *path = get_string(env, argv[1]);
  if (!path) return throw_errno(env, EINVAL, "openInRoot");
  struct open_how how;
  memset(&how, 0, sizeof how);
  how.flags = (unsigned)flags | O_CLOEXEC;
  how.mode = (flags & (O_CREAT | O_TMPFILE)) ? (unsigned)mode : 0;
  how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
  long fd;
  do {
    fd = syscall(SYS_openat2, rootfd, path, &how, sizeof how);
  } while (fd < 0 && errno == EAGAIN);
  int err = errno;
  free(path);
  if (fd < 0) return throw_errno(env, err, "openat2");
  return int_result(env, (int)fd);
}

// A single path component: what the *at calls below accept as a name.
static int plain_name(const char *s) {
  return s[0] != '\0' && strchr(s, '/') == NULL && strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
}

// mkdirAt(dirfd, name, mode)
static napi_value mkdir_at(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  int32_t dirfd, mode;
  if (get_args(env, info, 3, argv)) return throw_errno(env, EINVAL, "mkdirAt");
  CHECK(napi_get_value_int32(env, argv[0], &dirfd));
  CHECK(napi_get_value_int32(env, argv[2], &mode));
  char *name = get_string(env, argv[1]);
  if (!name || !plain_name(name)) {
    free(name);
    return throw_errno(env, EINVAL, "mkdirat");
  }
  int rc = mkdirat(dirfd, name, (mode_t)mode);
  int err = errno;
  free(name);
  if (rc < 0) return throw_errno(env, err, "mkdirat");
  return NULL;
}

// symlinkAt(target, dirfd, name)
static napi_value symlink_at(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  int32_t dirfd;
  if (get_args(env, info, 3, argv)) return throw_errno(env, EINVAL, "symlinkAt");
  CHECK(napi_get_value_int32(env, argv[1], &dirfd));
  char *target = get_string(env, argv[0]);
  char *name = get_string(env, argv[2]);
  if (!target || !name || !plain_name(name) || target[0] == '\0') {
    free(target);
    free(name);
    return throw_errno(env, EINVAL, "symlinkat");
  }
  int rc = symlinkat(target, dirfd, name);
  int err = errno;
  free(target);
  free(name);
  if (rc < 0) return throw_errno(env, err, "symlinkat");
  return NULL;
}

// unlinkAt(dirfd, name, removeDir)
static napi_value unlink_at(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  int32_t dirfd;
  bool dir;
  if (get_args(env, info, 3, argv)) return throw_errno(env, EINVAL, "unlinkAt");
  CHECK(napi_get_value_int32(env, argv[0], &dirfd));
  CHECK(napi_get_value_bool(env, argv[2], &dir));
  char *name = get_string(env, argv[1]);
  if (!name || !plain_name(name)) {
    free(name);
    return throw_errno(env, EINVAL, "unlinkat");
  }
  int rc = unlinkat(dirfd, name, dir ? AT_REMOVEDIR : 0);
  int err = errno;
  free(name);
  if (rc < 0) return throw_errno(env, err, "unlinkat");
  return NULL;
}

// renameAt(oldDirFd, oldName, newDirFd, newName)
static napi_value rename_at(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  int32_t olddir, newdir;
  if (get_args(env, info, 4, argv)) return throw_errno(env, EINVAL, "renameAt");
  CHECK(napi_get_value_int32(env, argv[0], &olddir));
  CHECK(napi_get_value_int32(env, argv[2], &newdir));
  char *oldname = get_string(env, argv[1]);
  char *newname = get_string(env, argv[3]);
  if (!oldname || !newname || !plain_name(oldname) || !plain_name(newname)) {
    free(oldname);
    free(newname);
    return throw_errno(env, EINVAL, "renameat");
  }
  int rc = renameat(olddir, oldname, newdir, newname);
  int err = errno;
  free(oldname);
  free(newname);
  if (rc < 0) return throw_errno(env, err, "renameat");
  return NULL;
}

// readlinkFd(fd) -> target of the symlink an O_PATH|O_NOFOLLOW fd refers to
static napi_value readlink_fd(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  int32_t fd;
  if (get_args(env, info, 1, argv)) return throw_errno(env, EINVAL, "readlinkFd");
  CHECK(napi_get_value_int32(env, argv[0], &fd));
  char buf[4097];
  ssize_t n = readlinkat(fd, "", buf, sizeof buf - 1);
  if (n < 0) return throw_errno(env, errno, "readlinkat");
  napi_value out;
  napi_create_string_utf8(env, buf, (size_t)n, &out);
  return out;
}

// chownFd(fd, uid, gid): works on O_PATH fds, symlinks included (never follows)
static napi_value chown_fd(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  int32_t fd, uid, gid;
  if (get_args(env, info, 3, argv)) return throw_errno(env, EINVAL, "chownFd");
  CHECK(napi_get_value_int32(env, argv[0], &fd));
  CHECK(napi_get_value_int32(env, argv[1], &uid));
  CHECK(napi_get_value_int32(env, argv[2], &gid));
  if (fchownat(fd, "", (uid_t)uid, (gid_t)gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0) return throw_errno(env, errno, "fchownat");
  return NULL;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"openRoot", NULL, open_root, NULL, NULL, NULL, napi_default, NULL},
      {"openInRoot", NULL, open_in_root, NULL, NULL, NULL, napi_default, NULL},
      {"mkdirAt", NULL, mkdir_at, NULL, NULL, NULL, napi_default, NULL},
      {"symlinkAt", NULL, symlink_at, NULL, NULL, NULL, napi_default, NULL},
      {"unlinkAt", NULL, unlink_at, NULL, NULL, NULL, napi_default, NULL},
      {"renameAt", NULL, rename_at, NULL, NULL, NULL, napi_default, NULL},
      {"readlinkFd", NULL, readlink_fd, NULL, NULL, NULL, napi_default, NULL},
      {"chownFd", NULL, chown_fd, NULL, NULL, NULL, napi_default, NULL},
      {"sealedExecutable", NULL, sealed_executable, NULL, NULL, NULL, napi_default, NULL},
      {"openPtyInRoot", NULL, open_pty_in_root, NULL, NULL, NULL, napi_default, NULL},
      {"setWindowSize", NULL, set_window_size, NULL, NULL, NULL, napi_default, NULL},
      {"socketPair", NULL, socket_pair, NULL, NULL, NULL, napi_default, NULL},
      {"spawn", NULL, spawn_process, NULL, NULL, NULL, napi_default, NULL},
      {"peerCredentials", NULL, peer_credentials, NULL, NULL, NULL, napi_default, NULL},
      {"ethtoolLinkSettings", NULL, ethtool_link_settings, NULL, NULL, NULL, napi_default, NULL},
      {"btrfsSetReceivedUuid", NULL, btrfs_set_received_uuid, NULL, NULL, NULL, napi_default, NULL},
      {"idmapMountError", NULL, idmap_mount_error, NULL, NULL, NULL, napi_default, NULL},
      {"liblxcHasExtension", NULL, liblxc_has_extension, NULL, NULL, NULL, napi_default, NULL},
      {"liblxcVersion", NULL, liblxc_version, NULL, NULL, NULL, napi_default, NULL},
      {"idmappedBind", NULL, idmapped_bind, NULL, NULL, NULL, napi_default, NULL},
      {"netnsLinks", NULL, netns_links, NULL, NULL, NULL, napi_default, NULL},
      {"readSmallFiles", NULL, read_small_files, NULL, NULL, NULL, napi_default, NULL},
      {"watchProcess", NULL, watch_process, NULL, NULL, NULL, napi_default, NULL},
      {"unwatchProcess", NULL, unwatch_process, NULL, NULL, NULL, napi_default, NULL},
      {"processExited", NULL, process_exited, NULL, NULL, NULL, napi_default, NULL},
      {"releaseIdleMemory", NULL, release_idle_memory, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  napi_value v;
  napi_create_int32(env, O_PATH, &v);
  napi_set_named_property(env, exports, "O_PATH", v);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
