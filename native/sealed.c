// sealedExecutable(path) -> fd of a sealed, read-only in-memory copy of an executable.
// The daemon runs its liblxc helpers from such copies (as /proc/PID/fd/N), so a process in a
// container that reaches a helper through /proc/PID/exe can never write to the host binary
// (the attack liblxc's own tools prevent by re-executing themselves from a memfd each time).
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <node_api.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <unistd.h>

napi_value native_throw_errno(napi_env env, int err, const char *what);
char *native_get_string(napi_env env, napi_value v);

napi_value sealed_executable(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1) return native_throw_errno(env, EINVAL, "sealedExecutable");
  char *path = native_get_string(env, argv[0]);
  if (!path) return native_throw_errno(env, EINVAL, "sealedExecutable");
  int src = open(path, O_RDONLY | O_CLOEXEC);
  free(path);
  if (src < 0) return native_throw_errno(env, errno, "open");
  struct stat st;
  int mem = -1, err = 0;
  if (fstat(src, &st) < 0) { err = errno; goto out; }
  mem = memfd_create("nodelxd-helper", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (mem < 0) { err = errno; goto out; }
  for (off_t done = 0; done < st.st_size;) {
    ssize_t n = sendfile(mem, src, NULL, st.st_size - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) { err = n < 0 ? errno : EIO; goto out; }
    done += n;
  }
  if (fchmod(mem, 0500) < 0 || fcntl(mem, F_ADD_SEALS, F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE) < 0) err = errno;
out:
  close(src);
  if (err) {
    if (mem >= 0) close(mem);
    return native_throw_errno(env, err, "sealedExecutable");
  }
  napi_value out;
  napi_create_int32(env, mem, &out);
  return out;
}
