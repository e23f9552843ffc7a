// netnsLinks(pids): for each pid, the links and addresses of its network namespace, read with two
// rtnetlink dumps from inside that namespace. The work runs off the event loop on threads of their
// own (a pool thread must never change namespace), which enter each namespace in turn and exit.
// Resolves with one entry per pid: null when its namespace cannot be entered, else
// { links: [{ index, name, flags, type, mtu, address, stats: [rx_bytes, rx_packets, rx_errors,
// rx_dropped (+ missed, as /proc/net/dev), tx_bytes, tx_packets, tx_errors, tx_dropped]}],
// addrs: [{ index, family, prefix, scope, address }] }.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_link.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <node_api.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

napi_value native_throw_errno(napi_env env, int err, const char *what);

#define MAX_LINKS 32
#define MAX_ADDRS 64
#define MAX_PIDS 100000

struct link_info {
  int index;
  unsigned flags;
  unsigned type;
  unsigned mtu;
  char name[IFNAMSIZ];
  char address[3 * 32];
  uint64_t stats[8];
};

struct addr_info {
  int index;
  int family;
  int prefix;
  int scope;
  char address[INET6_ADDRSTRLEN];
};

struct ns_info {
  int ok;
  int nlinks;
  int naddrs;
  struct link_info links[MAX_LINKS];
  struct addr_info addrs[MAX_ADDRS];
};

struct job {
  int npids;
  int *pids;
  struct ns_info *out;
  napi_deferred deferred;
  napi_async_work work;
};

static void hex_address(const unsigned char *b, int len, char *out, size_t size) {
  size_t pos = 0;
  out[0] = 0;
  for (int i = 0; i < len && pos + 3 < size; i++) pos += snprintf(out + pos, size - pos, i ? ":%02x" : "%02x", b[i]);
}

static void on_link(struct ns_info *ns, struct nlmsghdr *h) {
  if (ns->nlinks >= MAX_LINKS) return;
  struct ifinfomsg *ifi = NLMSG_DATA(h);
  struct link_info *l = &ns->links[ns->nlinks];
  memset(l, 0, sizeof *l);
  l->index = ifi->ifi_index;
  l->flags = ifi->ifi_flags;
  l->type = ifi->ifi_type;
  int len = IFLA_PAYLOAD(h);
  for (struct rtattr *a = IFLA_RTA(ifi); RTA_OK(a, len); a = RTA_NEXT(a, len)) {
    switch (a->rta_type) {
    case IFLA_IFNAME:
      snprintf(l->name, sizeof l->name, "%.*s", (int)RTA_PAYLOAD(a), (char *)RTA_DATA(a));
      break;
    case IFLA_MTU:
      if (RTA_PAYLOAD(a) >= 4) memcpy(&l->mtu, RTA_DATA(a), 4);
      break;
    case IFLA_ADDRESS:
      hex_address(RTA_DATA(a), RTA_PAYLOAD(a) > 32 ? 32 : (int)RTA_PAYLOAD(a), l->address, sizeof l->address);
      break;
    case IFLA_STATS64:
      if (RTA_PAYLOAD(a) >= sizeof(struct rtnl_link_stats64)) {
        struct rtnl_link_stats64 s;
        memcpy(&s, RTA_DATA(a), sizeof s);
        uint64_t v[8] = {s.rx_bytes, s.rx_packets, s.rx_errors, s.rx_dropped + s.rx_missed_errors,
                         s.tx_bytes, s.tx_packets, s.tx_errors, s.tx_dropped};
        memcpy(l->stats, v, sizeof v);
      }
      break;
    }
  }
  if (l->name[0]) ns->nlinks++;
}

static void on_addr(struct ns_info *ns, struct nlmsghdr *h) {
  if (ns->naddrs >= MAX_ADDRS) return;
  struct ifaddrmsg *ifa = NLMSG_DATA(h);
  if (ifa->ifa_family != AF_INET && ifa->ifa_family != AF_INET6) return;
  struct addr_info *x = &ns->addrs[ns->naddrs];
  memset(x, 0, sizeof *x);
  x->index = ifa->ifa_index;
  x->family = ifa->ifa_family;
  x->prefix = ifa->ifa_prefixlen;
  x->scope = ifa->ifa_scope;
  const void *local = NULL, *address = NULL;
  int len = IFA_PAYLOAD(h);
  for (struct rtattr *a = IFA_RTA(ifa); RTA_OK(a, len); a = RTA_NEXT(a, len)) {
    if (a->rta_type == IFA_LOCAL) local = RTA_DATA(a);
    if (a->rta_type == IFA_ADDRESS) address = RTA_DATA(a);
  }
  // IFA_LOCAL is the interface's own address; IFA_ADDRESS is the peer's on point-to-point links.
  const void *own = local ? local : address;
  if (!own || !inet_ntop(ifa->ifa_family, own, x->address, sizeof x->address)) return;
  ns->naddrs++;
}

/** One rtnetlink dump (RTM_GETLINK or RTM_GETADDR) on `fd`; 0 or an errno. */
static int dump(int fd, int type, struct ns_info *ns) {
  struct {
    struct nlmsghdr h;
    union {
      struct ifinfomsg link;
      struct ifaddrmsg addr;
    } body;
  } req;
  memset(&req, 0, sizeof req);
  req.h.nlmsg_len = NLMSG_LENGTH(type == RTM_GETLINK ? sizeof(struct ifinfomsg) : sizeof(struct ifaddrmsg));
  req.h.nlmsg_type = type;
  req.h.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  req.h.nlmsg_seq = (unsigned)type;
  if (type == RTM_GETLINK) req.body.link.ifi_family = AF_UNSPEC;
  else req.body.addr.ifa_family = AF_UNSPEC;
  if (send(fd, &req, req.h.nlmsg_len, 0) < 0) return errno;
  static __thread char buf[32768];
  for (;;) {
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    if (n == 0) return EIO;
    for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, (size_t)n); h = NLMSG_NEXT(h, n)) {
      if (h->nlmsg_type == NLMSG_DONE) return 0;
      if (h->nlmsg_type == NLMSG_ERROR) {
        struct nlmsgerr *e = NLMSG_DATA(h);
        return e->error ? -e->error : 0;
      }
      if (h->nlmsg_type == RTM_NEWLINK) on_link(ns, h);
      else if (h->nlmsg_type == RTM_NEWADDR) on_addr(ns, h);
    }
  }
}

static void read_ns(int pid, struct ns_info *ns) {
  memset(ns, 0, sizeof *ns);
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/ns/net", pid);
  int nsfd = open(path, O_RDONLY | O_CLOEXEC);
  if (nsfd < 0) return;
  int ok = setns(nsfd, CLONE_NEWNET) == 0;
  close(nsfd);
  if (!ok) return;
  int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
  if (fd < 0) return;
  struct timeval tv = {.tv_sec = 2};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  if (dump(fd, RTM_GETLINK, ns) == 0 && dump(fd, RTM_GETADDR, ns) == 0) ns->ok = 1;
  close(fd);
}

struct part {
  struct job *job;
  int from, to;
};

static void *reader_thread(void *arg) {
  struct part *p = arg;
  for (int i = p->from; i < p->to; i++) read_ns(p->job->pids[i], &p->job->out[i]);
  return NULL;
}

/* Two threads of their own, each entering half of the namespaces in turn (a long list is read in
 * about half the time on a host with two or more CPUs). */
static void execute(napi_env env, void *data) {
  struct job *job = data;
  int half = job->npids >= 32 ? job->npids / 2 : job->npids;
  struct part parts[2] = {{job, 0, half}, {job, half, job->npids}};
  pthread_t t[2];
  int started[2] = {0, 0};
  for (int k = 0; k < 2; k++) {
    if (parts[k].from == parts[k].to) continue;
    started[k] = pthread_create(&t[k], NULL, reader_thread, &parts[k]) == 0; /* on failure its entries stay !ok */
  }
  for (int k = 0; k < 2; k++)
    if (started[k]) pthread_join(t[k], NULL);
}

static void set_num(napi_env env, napi_value obj, const char *name, double v) {
  napi_value n;
  napi_create_double(env, v, &n);
  napi_set_named_property(env, obj, name, n);
}

static void set_str(napi_env env, napi_value obj, const char *name, const char *v) {
  napi_value s;
  napi_create_string_utf8(env, v, NAPI_AUTO_LENGTH, &s);
  napi_set_named_property(env, obj, name, s);
}

static void complete(napi_env env, napi_status status, void *data) {
  struct job *job = data;
  napi_value result;
  napi_create_array_with_length(env, job->npids, &result);
  for (int i = 0; i < job->npids; i++) {
    struct ns_info *ns = &job->out[i];
    napi_value entry;
    if (!ns->ok) {
      napi_get_null(env, &entry);
      napi_set_element(env, result, i, entry);
      continue;
    }
    napi_create_object(env, &entry);
    napi_value links, addrs;
    napi_create_array_with_length(env, ns->nlinks, &links);
    for (int j = 0; j < ns->nlinks; j++) {
      struct link_info *l = &ns->links[j];
      napi_value o, stats;
      napi_create_object(env, &o);
      set_num(env, o, "index", l->index);
      set_str(env, o, "name", l->name);
      set_num(env, o, "flags", l->flags);
      set_num(env, o, "type", l->type);
      set_num(env, o, "mtu", l->mtu);
      set_str(env, o, "address", l->address);
      napi_create_array_with_length(env, 8, &stats);
      for (int k = 0; k < 8; k++) {
        napi_value n;
        napi_create_double(env, (double)l->stats[k], &n);
        napi_set_element(env, stats, k, n);
      }
      napi_set_named_property(env, o, "stats", stats);
      napi_set_element(env, links, j, o);
    }
    napi_create_array_with_length(env, ns->naddrs, &addrs);
    for (int j = 0; j < ns->naddrs; j++) {
      struct addr_info *x = &ns->addrs[j];
      napi_value o;
      napi_create_object(env, &o);
      set_num(env, o, "index", x->index);
      set_num(env, o, "family", x->family == AF_INET ? 4 : 6);
      set_num(env, o, "prefix", x->prefix);
      set_num(env, o, "scope", x->scope);
      set_str(env, o, "address", x->address);
      napi_set_element(env, addrs, j, o);
    }
    napi_set_named_property(env, entry, "links", links);
    napi_set_named_property(env, entry, "addrs", addrs);
    napi_set_element(env, result, i, entry);
  }
  napi_resolve_deferred(env, job->deferred, result);
  napi_delete_async_work(env, job->work);
  free(job->pids);
  free(job->out);
  free(job);
}

napi_value netns_links(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  bool is_array = false;
  uint32_t n = 0;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1 || napi_is_array(env, argv[0], &is_array) != napi_ok || !is_array)
    return native_throw_errno(env, EINVAL, "netnsLinks");
  napi_get_array_length(env, argv[0], &n);
  if (n > MAX_PIDS) return native_throw_errno(env, E2BIG, "netnsLinks");
  struct job *job = calloc(1, sizeof *job);
  if (!job) return native_throw_errno(env, ENOMEM, "netnsLinks");
  job->npids = (int)n;
  job->pids = calloc(n ? n : 1, sizeof(int));
  job->out = calloc(n ? n : 1, sizeof(struct ns_info));
  if (!job->pids || !job->out) {
    free(job->pids);
    free(job->out);
    free(job);
    return native_throw_errno(env, ENOMEM, "netnsLinks");
  }
  for (uint32_t i = 0; i < n; i++) {
    napi_value v;
    int32_t pid = 0;
    napi_get_element(env, argv[0], i, &v);
    if (napi_get_value_int32(env, v, &pid) != napi_ok || pid <= 0) pid = 0;
    job->pids[i] = pid;
  }
  napi_value promise, name;
  napi_create_promise(env, &job->deferred, &promise);
  napi_create_string_utf8(env, "netnsLinks", NAPI_AUTO_LENGTH, &name);
  napi_create_async_work(env, NULL, name, execute, complete, job, &job->work);
  napi_queue_async_work(env, job->work);
  return promise;
}

