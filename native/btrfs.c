// btrfsSetReceivedUuid(path, uuid): the BTRFS_IOC_SET_RECEIVED_SUBVOL ioctl, as LXD's
// setReceivedUUID: a received subvolume that was made writable to be moved into place loses
// its "Received UUID", which later incremental streams look their parent up by; this puts it
// back. `uuid` is the 36-character textual form.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/btrfs.h>
#include <node_api.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

napi_value native_throw_errno(napi_env env, int err, const char *what);

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

napi_value btrfs_set_received_uuid(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  char path[4096], text[40];
  size_t plen = 0, tlen = 0;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2) return native_throw_errno(env, EINVAL, "btrfsSetReceivedUuid");
  if (napi_get_value_string_utf8(env, argv[0], path, sizeof path, &plen) != napi_ok || plen == 0 || plen >= sizeof path - 1) return native_throw_errno(env, EINVAL, "btrfsSetReceivedUuid");
  if (napi_get_value_string_utf8(env, argv[1], text, sizeof text, &tlen) != napi_ok || tlen != 36) return native_throw_errno(env, EINVAL, "btrfsSetReceivedUuid");

  struct btrfs_ioctl_received_subvol_args args;
  memset(&args, 0, sizeof args);
  size_t n = 0;
  for (size_t i = 0; i < tlen; i++) {
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (text[i] != '-') return native_throw_errno(env, EINVAL, "btrfsSetReceivedUuid");
      continue;
    }
    int hi = hexval(text[i]), lo = (i + 1 < tlen) ? hexval(text[i + 1]) : -1;
    if (hi < 0 || lo < 0 || n >= BTRFS_UUID_SIZE) return native_throw_errno(env, EINVAL, "btrfsSetReceivedUuid");
    args.uuid[n++] = (char)(hi << 4 | lo);
    i++;
  }
  if (n != BTRFS_UUID_SIZE) return native_throw_errno(env, EINVAL, "btrfsSetReceivedUuid");

  int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return native_throw_errno(env, errno, "open");
  if (ioctl(fd, BTRFS_IOC_SET_RECEIVED_SUBVOL, &args) < 0) {
    int err = errno;
    close(fd);
    return native_throw_errno(env, err, "BTRFS_IOC_SET_RECEIVED_SUBVOL");
  }
  close(fd);
  return NULL;
}
