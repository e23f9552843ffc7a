// ethtoolLinkSettings(ifname): the ETHTOOL_GLINKSETTINGS ioctl (SIOCETHTOOL), as LXD's resources
// code issues it: a first call learns the size of the link mode masks (the kernel answers it
// negated), a second one fetches settings and masks. Returns { autoneg, duplex, speed, port,
// transceiver, supported: [u32 words] } or null when the interface or driver has no answer.
#define _GNU_SOURCE
#include <errno.h>
#include <linux/ethtool.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <node_api.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

napi_value native_throw_errno(napi_env env, int err, const char *what);

#define MAX_NWORDS 127

struct link_settings_req {
  struct ethtool_link_settings s;
  uint32_t masks[3 * MAX_NWORDS];
};

static napi_value set_u32(napi_env env, napi_value obj, const char *name, uint32_t v) {
  napi_value n;
  napi_create_uint32(env, v, &n);
  napi_set_named_property(env, obj, name, n);
  return obj;
}

napi_value ethtool_link_settings(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  char name[IFNAMSIZ + 1];
  size_t len = 0;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1) return native_throw_errno(env, EINVAL, "ethtoolLinkSettings");
  if (napi_get_value_string_utf8(env, argv[0], name, sizeof name, &len) != napi_ok || len == 0 || len >= IFNAMSIZ) return native_throw_errno(env, EINVAL, "ethtoolLinkSettings");

  napi_value null;
  napi_get_null(env, &null);
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return native_throw_errno(env, errno, "socket");

  struct link_settings_req req;
  struct ifreq ifr;
  memset(&req, 0, sizeof req);
  memset(&ifr, 0, sizeof ifr);
  memcpy(ifr.ifr_name, name, len);
  ifr.ifr_data = (void *)&req;
  req.s.cmd = ETHTOOL_GLINKSETTINGS;
  if (ioctl(fd, SIOCETHTOOL, &ifr) < 0 || req.s.link_mode_masks_nwords >= 0 || req.s.cmd != ETHTOOL_GLINKSETTINGS) {
    close(fd);
    return null;
  }
  int nwords = -req.s.link_mode_masks_nwords;
  if (nwords > MAX_NWORDS) {
    close(fd);
    return null;
  }
  req.s.link_mode_masks_nwords = nwords;
  if (ioctl(fd, SIOCETHTOOL, &ifr) < 0 || req.s.link_mode_masks_nwords <= 0 || req.s.cmd != ETHTOOL_GLINKSETTINGS) {
    close(fd);
    return null;
  }
  close(fd);

  napi_value out, supported, word;
  napi_create_object(env, &out);
  set_u32(env, out, "autoneg", req.s.autoneg);
  set_u32(env, out, "duplex", req.s.duplex);
  set_u32(env, out, "speed", req.s.speed);
  set_u32(env, out, "port", req.s.port);
  set_u32(env, out, "transceiver", req.s.transceiver);
  napi_create_array_with_length(env, (size_t)nwords, &supported);
  for (int i = 0; i < nwords; i++) {
    napi_create_uint32(env, req.masks[i], &word);
    napi_set_element(env, supported, (uint32_t)i, word);
  }
  napi_set_named_property(env, out, "supported", supported);
  return out;
}
