// nodelxd-proxy LPID LPROTO LADDR LPORTS CPID CPROTO CADDR CPORTS UID GID MODE SECUID SECGID PROXYPROTO WATCHPID
// The relay of a proxy device, as LXD's forkproxy: a child enters the listen side's namespaces
// (user, net, and mount for a path socket; LPID 0 = stay in the host's), makes the listening
// sockets there and hands them over on a socket pair; this process then enters the connect
// side's namespaces (CPID), drops to SECUID:SECGID when asked, and relays every accepted
// connection (or UDP flow) to CPROTO:CADDR:port from one epoll loop. Ports are comma-separated
// lists, already expanded and validated by the daemon; the listen port i goes to connect port i,
// or to the one connect port. UID/GID/MODE ("" = unchanged) apply to a path listen socket.
// It reports "ok" or the error on descriptor 3 and closes it, writes its log to stdout (the
// daemon points it at logs/<instance>/proxy.<device>.log), runs in its own session so it
// outlives a daemon restart, and exits when WATCHPID (the container's init) exits or on SIGTERM,
// removing its path listen socket.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <libgen.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_PORTS 1024
#define BUF_SIZE (64 * 1024)
#define MAX_FDS 253
#define UDP_IDLE_SECONDS (30 * 60)

static int status_fd = 3;

static void report_error(const char *fmt, ...) {
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	printf("Error: %s\n", msg);
	fflush(stdout);
	if (status_fd >= 0) {
		dprintf(status_fd, "Error: %s\n", msg);
		close(status_fd);
		status_fd = -1;
	}
}

static void die(const char *fmt, ...) {
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	report_error("%s", msg);
	exit(1);
}

// ---- addresses ----

struct endpoint {
	int type; // SOCK_STREAM or SOCK_DGRAM
	bool is_unix;
	bool abstract;
	const char *addr; // ip literal or path ("@name" for abstract)
	int nports;
	unsigned short ports[MAX_PORTS];
};

static void parse_endpoint(struct endpoint *e, const char *proto, const char *addr, const char *ports) {
	memset(e, 0, sizeof *e);
	e->addr = addr;
	if (strcmp(proto, "tcp") == 0)
		e->type = SOCK_STREAM;
	else if (strcmp(proto, "udp") == 0)
		e->type = SOCK_DGRAM;
	else if (strcmp(proto, "unix") == 0) {
		e->type = SOCK_STREAM;
		e->is_unix = true;
		e->abstract = addr[0] == '@';
		if (strlen(addr) >= sizeof(((struct sockaddr_un *)0)->sun_path))
			die("Unix socket path too long: %s", addr);
		return;
	} else
		die("Unknown protocol type \"%s\"", proto);
	char *copy = strdup(ports), *save = NULL;
	for (char *p = strtok_r(copy, ",", &save); p; p = strtok_r(NULL, ",", &save)) {
		char *end;
		long v = strtol(p, &end, 10);
		if (*end || v < 0 || v > 65535 || e->nports >= MAX_PORTS)
			die("Invalid port \"%s\"", p);
		e->ports[e->nports++] = (unsigned short)v;
	}
	free(copy);
	if (e->nports == 0)
		die("At least one port is required");
}

static socklen_t make_sockaddr(const struct endpoint *e, int port_index, struct sockaddr_storage *ss) {
	memset(ss, 0, sizeof *ss);
	if (e->is_unix) {
		struct sockaddr_un *un = (struct sockaddr_un *)ss;
		un->sun_family = AF_UNIX;
		size_t len = strlen(e->addr);
		memcpy(un->sun_path, e->addr, len);
		if (e->abstract) {
			un->sun_path[0] = '\0';
			return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
		}
		return (socklen_t)sizeof *un;
	}
	unsigned short port = e->ports[port_index];
	struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
	if (inet_pton(AF_INET, e->addr, &in4->sin_addr) == 1) {
		in4->sin_family = AF_INET;
		in4->sin_port = htons(port);
		return sizeof *in4;
	}
	if (inet_pton(AF_INET6, e->addr, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons(port);
		return sizeof *in6;
	}
	die("Not an IP address \"%s\"", e->addr);
	return 0;
}

static void describe(const struct endpoint *e, int i, char *out, size_t n) {
	if (e->is_unix)
		snprintf(out, n, "%s", e->addr);
	else if (strchr(e->addr, ':'))
		snprintf(out, n, "[%s]:%u", e->addr, e->ports[i]);
	else
		snprintf(out, n, "%s:%u", e->addr, e->ports[i]);
}

// ---- namespaces ----

static int pidfd_open_(pid_t pid) { return (int)syscall(SYS_pidfd_open, pid, 0); }

static bool same_ns(int fd, const char *ns) {
	char path[64];
	struct stat a, b;
	snprintf(path, sizeof path, "/proc/self/ns/%s", ns);
	if (stat(path, &a) < 0 || fstat(fd, &b) < 0)
		return false;
	return a.st_ino == b.st_ino && a.st_dev == b.st_dev;
}

// Enter pid's user (when it differs), net and (when mnt) mount namespaces, as container root.
static void enter(pid_t pid, bool mnt) {
	char path[64];
	int pidfd = pidfd_open_(pid);
	if (pidfd < 0)
		die("%s - Failed to open the process %d", strerror(errno), pid);
	int fds[3];
	const char *names[3] = {"user", "net", "mnt"};
	for (int i = 0; i < 3; i++) {
		snprintf(path, sizeof path, "/proc/%d/ns/%s", pid, names[i]);
		fds[i] = open(path, O_RDONLY | O_CLOEXEC);
		if (fds[i] < 0)
			die("%s - Failed to open %s", strerror(errno), path);
	}
	// The pid was not recycled between pidfd_open and the opens above.
	if (syscall(SYS_pidfd_send_signal, pidfd, 0, NULL, 0) < 0)
		die("%s - The process %d is gone", strerror(errno), pid);
	close(pidfd);
	if (!same_ns(fds[0], "user")) {
		if (setns(fds[0], CLONE_NEWUSER) < 0)
			die("%s - Failed setns to container user namespace", strerror(errno));
		if (setgid(0) < 0 || setuid(0) < 0)
			die("%s - Failed to switch to the container's root", strerror(errno));
		setgroups(0, NULL);
	}
	if (setns(fds[1], CLONE_NEWNET) < 0)
		die("%s - Failed setns to the network namespace", strerror(errno));
	if (mnt && setns(fds[2], CLONE_NEWNS) < 0)
		die("%s - Failed setns to the mount namespace", strerror(errno));
	for (int i = 0; i < 3; i++)
		close(fds[i]);
}

// ---- descriptor passing ----

static int send_msg(int sock, const char *data, size_t len, int fd) {
	struct iovec iov = {.iov_base = (void *)data, .iov_len = len};
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
	if (fd >= 0) {
		msg.msg_control = u.buf;
		msg.msg_controllen = sizeof u.buf;
		struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &fd, sizeof(int));
	}
	ssize_t n;
	do
		n = sendmsg(sock, &msg, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	return n < 0 ? -1 : 0;
}

// One message: returns its length (0 at end of file), the passed descriptor in *fd (or -1).
static ssize_t recv_msg(int sock, char *data, size_t len, int *fd) {
	struct iovec iov = {.iov_base = data, .iov_len = len};
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof u.buf};
	ssize_t n;
	do
		n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	*fd = -1;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c))
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
			memcpy(fd, CMSG_DATA(c), sizeof(int));
	return n;
}

// ---- the listen side (child) ----

static void child_fail(int sock, const char *fmt, ...) {
	char msg[1024];
	msg[0] = 'E';
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg + 1, sizeof msg - 1, fmt, ap);
	va_end(ap);
	send_msg(sock, msg, strlen(msg), -1);
	_exit(1);
}

static int listen_one(int sock, const struct endpoint *l, int i) {
	struct sockaddr_storage ss;
	socklen_t len = make_sockaddr(l, i, &ss);
	char where[300];
	describe(l, i, where, sizeof where);
	int fd = socket(ss.ss_family, l->type | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		child_fail(sock, "Failed to listen on %s: %s", where, strerror(errno));
	int one = 1;
	if (!l->is_unix)
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (ss.ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
	int tries = 0;
	while (bind(fd, (struct sockaddr *)&ss, len) < 0) {
		// As forkproxy: a port still held by a relay that is going away gets a few seconds.
		if (errno != EADDRINUSE || l->is_unix || ++tries >= 10)
			child_fail(sock, "Failed to listen on %s: %s", where, strerror(errno));
		usleep(500 * 1000);
	}
	if (l->type == SOCK_STREAM && listen(fd, 128) < 0)
		child_fail(sock, "Failed to listen on %s: %s", where, strerror(errno));
	return fd;
}

static void listen_side(int sock, pid_t lpid, const struct endpoint *l, const char *uid, const char *gid, const char *mode) {
	bool path = l->is_unix && !l->abstract;
	if (lpid > 0)
		enter(lpid, path);
	if (path) {
		// A stale socket (a relay killed hard) is replaced; any other file is left alone.
		struct stat st;
		if (lstat(l->addr, &st) == 0) {
			if (!S_ISSOCK(st.st_mode))
				child_fail(sock, "Failed to listen on %s: the path exists and is not a socket", l->addr);
			if (unlink(l->addr) < 0)
				child_fail(sock, "Failed to remove %s: %s", l->addr, strerror(errno));
		}
	}
	int n = l->is_unix ? 1 : l->nports;
	for (int i = 0; i < n; i++) {
		int fd = listen_one(sock, l, i);
		if (send_msg(sock, "F", 1, fd) < 0)
			_exit(1);
		close(fd);
	}
	if (path) {
		long u = uid[0] ? strtol(uid, NULL, 10) : -1, g = gid[0] ? strtol(gid, NULL, 10) : -1;
		if ((u != -1 || g != -1) && chown(l->addr, (uid_t)u, (gid_t)g) < 0)
			child_fail(sock, "Failed to chown %s: %s", l->addr, strerror(errno));
		if (mode[0] && chmod(l->addr, (mode_t)strtol(mode, NULL, 8)) < 0)
			child_fail(sock, "Failed to chmod %s: %s", l->addr, strerror(errno));
		// The directory, so the relay can remove the socket when it ends.
		char *copy = strdup(l->addr);
		int dir = open(dirname(copy), O_PATH | O_DIRECTORY | O_CLOEXEC);
		free(copy);
		if (dir >= 0) {
			send_msg(sock, "D", 1, dir);
			close(dir);
		}
	}
	send_msg(sock, "K", 1, -1);
	_exit(0);
}

// ---- the relay ----

struct buffer {
	char *data;
	size_t start, end;
	int fds[MAX_FDS];
	int nfds;
};

struct conn;

struct side {
	int kind; // 0 listener, 1 connection side, 2 udp session, 3 signal, 4 watch
	struct conn *conn;
	int which; // 0 = client side, 1 = target side
	int fd;
};

struct conn {
	struct side s[2];
	struct buffer buf[2]; // buf[i]: data read from side i, to write to side 1-i
	bool eof[2];          // side i reached end of file
	bool shut[2];         // side i was shut down for writing
	bool connecting;      // target side connect in progress
	bool dgram_target;
	bool unix_pair;
	bool closed;
	unsigned int events[2];
	struct conn *next_dead;
};

struct listener {
	struct side side;
	int index; // port index
};

struct udp_session {
	struct side side;
	struct listener *listener;
	struct sockaddr_storage client;
	socklen_t client_len;
	time_t last;
	struct udp_session *next;
};

static int ep;
static struct endpoint L, C;
static bool proxy_protocol;
static struct udp_session *sessions;
static int listen_dir = -1;
static char listen_base[256];

static void log_line(const char *fmt, ...) {
	va_list ap;
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
}

static void watch(struct side *s, unsigned int events, int op) {
	struct epoll_event ev = {.events = events, .data.ptr = s};
	epoll_ctl(ep, op, s->fd, &ev);
}

static void free_buffer(struct buffer *b) {
	for (int i = 0; i < b->nfds; i++)
		close(b->fds[i]);
	b->nfds = 0;
	free(b->data);
}

// Closed connections are freed after the batch of events that may still point at them.
static struct conn *dead;

static void close_conn(struct conn *c) {
	if (c->closed)
		return;
	for (int i = 0; i < 2; i++) {
		if (c->s[i].fd >= 0) {
			epoll_ctl(ep, EPOLL_CTL_DEL, c->s[i].fd, NULL);
			close(c->s[i].fd);
			c->s[i].fd = -1;
		}
		free_buffer(&c->buf[i]);
	}
	c->closed = true;
	c->next_dead = dead;
	dead = c;
}

static void bury(void) {
	while (dead) {
		struct conn *c = dead;
		dead = c->next_dead;
		free(c);
	}
}

// Write what side 1-i read to side i. Returns -1 on a fatal error.
static int flush_to(struct conn *c, int i) {
	struct buffer *b = &c->buf[1 - i];
	while (b->end > b->start) {
		struct iovec iov = {.iov_base = b->data + b->start, .iov_len = b->end - b->start};
		union {
			char buf[CMSG_SPACE(sizeof(int) * MAX_FDS)];
			struct cmsghdr align;
		} u;
		struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
		if (b->nfds > 0) {
			msg.msg_control = u.buf;
			msg.msg_controllen = CMSG_SPACE(sizeof(int) * b->nfds);
			struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
			cm->cmsg_level = SOL_SOCKET;
			cm->cmsg_type = SCM_RIGHTS;
			cm->cmsg_len = CMSG_LEN(sizeof(int) * b->nfds);
			memcpy(CMSG_DATA(cm), b->fds, sizeof(int) * b->nfds);
		}
		ssize_t n = sendmsg(c->s[i].fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return 0;
			if (errno == ECONNREFUSED && c->dgram_target && i == 1) {
				b->start = b->end; // nobody listens (yet): the datagram is lost, as with UDP
				continue;
			}
			return -1;
		}
		for (int k = 0; k < b->nfds; k++)
			close(b->fds[k]);
		b->nfds = 0;
		b->start += (size_t)n;
	}
	b->start = b->end = 0;
	return 0;
}

// Read from side i into its buffer. Returns -1 on a fatal error.
static int fill_from(struct conn *c, int i) {
	struct buffer *b = &c->buf[i];
	if (b->end >= BUF_SIZE || (c->unix_pair && b->end > b->start))
		return 0;
	struct iovec iov = {.iov_base = b->data + b->end, .iov_len = BUF_SIZE - b->end};
	union {
		char buf[CMSG_SPACE(sizeof(int) * MAX_FDS)];
		struct cmsghdr align;
	} u;
	struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
	if (c->unix_pair) {
		msg.msg_control = u.buf;
		msg.msg_controllen = sizeof u.buf;
	}
	ssize_t n;
	do
		n = recvmsg(c->s[i].fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	if (n < 0) {
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return 0;
		if (errno == ECONNREFUSED && c->dgram_target && i == 1)
			return 0;
		return -1;
	}
	if (c->unix_pair)
		for (struct cmsghdr *cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm))
			if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS) {
				int k = (int)((cm->cmsg_len - CMSG_LEN(0)) / sizeof(int));
				for (int j = 0; j < k; j++) {
					int fd;
					memcpy(&fd, CMSG_DATA(cm) + j * sizeof(int), sizeof(int));
					if (b->nfds < MAX_FDS)
						b->fds[b->nfds++] = fd;
					else
						close(fd);
				}
			}
	if (n == 0 && !(c->dgram_target && i == 1))
		c->eof[i] = true;
	b->end += (size_t)n;
	return 0;
}

// Recompute interests; close the pair when both directions are done.
static void update(struct conn *c) {
	for (int i = 0; i < 2; i++) {
		if (c->eof[i] && c->buf[i].end == c->buf[i].start && !c->shut[1 - i]) {
			if (!(c->dgram_target && 1 - i == 1))
				shutdown(c->s[1 - i].fd, SHUT_WR);
			c->shut[1 - i] = true;
		}
	}
	bool done = (c->eof[0] && c->shut[1] && c->eof[1] && c->shut[0]) ||
		    // A datagram target never ends: the client's end of file ends the flow.
		    (c->dgram_target && c->eof[0] && c->shut[1]);
	if (done) {
		close_conn(c);
		return;
	}
	for (int i = 0; i < 2; i++) {
		unsigned int ev = 0;
		if (i == 1 && c->connecting)
			ev = EPOLLOUT;
		else {
			bool room = c->unix_pair ? c->buf[i].end == c->buf[i].start : c->buf[i].end < BUF_SIZE;
			if (!c->eof[i] && room && !(i == 0 && c->connecting))
				ev |= EPOLLIN;
			if (c->buf[1 - i].end > c->buf[1 - i].start)
				ev |= EPOLLOUT;
		}
		if (ev != c->events[i]) {
			watch(&c->s[i], ev, EPOLL_CTL_MOD);
			c->events[i] = ev;
		}
	}
}

static void add_proxy_header(struct conn *c, int client) {
	struct buffer *b = &c->buf[0];
	int n;
	if (L.is_unix) {
		n = snprintf(b->data, BUF_SIZE, "PROXY UNKNOWN\r\n");
	} else {
		struct sockaddr_storage peer, local;
		socklen_t pl = sizeof peer, ll = sizeof local;
		char ph[INET6_ADDRSTRLEN] = "", lh[INET6_ADDRSTRLEN] = "";
		unsigned pp = 0, lp = 0;
		getpeername(client, (struct sockaddr *)&peer, &pl);
		getsockname(client, (struct sockaddr *)&local, &ll);
		bool v6 = peer.ss_family == AF_INET6;
		if (v6) {
			inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&peer)->sin6_addr, ph, sizeof ph);
			inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&local)->sin6_addr, lh, sizeof lh);
			pp = ntohs(((struct sockaddr_in6 *)&peer)->sin6_port);
			lp = ntohs(((struct sockaddr_in6 *)&local)->sin6_port);
		} else {
			inet_ntop(AF_INET, &((struct sockaddr_in *)&peer)->sin_addr, ph, sizeof ph);
			inet_ntop(AF_INET, &((struct sockaddr_in *)&local)->sin_addr, lh, sizeof lh);
			pp = ntohs(((struct sockaddr_in *)&peer)->sin_port);
			lp = ntohs(((struct sockaddr_in *)&local)->sin_port);
		}
		n = snprintf(b->data, BUF_SIZE, "PROXY %s %s %s %u %u\r\n", v6 ? "TCP6" : "TCP4", ph, lh, pp, lp);
	}
	b->start = 0;
	b->end = (size_t)n;
}

static int connect_index(int listen_index) { return C.nports > 1 ? listen_index : 0; }

static void accept_one(struct listener *l) {
	int client = accept4(l->side.fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	if (client < 0) {
		if (errno != EAGAIN && errno != EINTR)
			log_line("Warning: Failed to accept new connection: %s", strerror(errno));
		return;
	}
	struct sockaddr_storage ss;
	socklen_t len = make_sockaddr(&C, connect_index(l->index), &ss);
	int target = socket(ss.ss_family, C.type | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (target < 0) {
		log_line("Warning: Failed to connect to target: %s", strerror(errno));
		close(client);
		return;
	}
	bool connecting = false;
	if (connect(target, (struct sockaddr *)&ss, len) < 0) {
		if (errno != EINPROGRESS && errno != EAGAIN) {
			char where[300];
			describe(&C, connect_index(l->index), where, sizeof where);
			log_line("Warning: Failed to connect to target: dial %s: %s", where, strerror(errno));
			close(client);
			close(target);
			return;
		}
		connecting = true;
	}
	struct conn *c = calloc(1, sizeof *c);
	c->buf[0].data = malloc(BUF_SIZE);
	c->buf[1].data = malloc(BUF_SIZE);
	c->dgram_target = C.type == SOCK_DGRAM;
	c->unix_pair = L.is_unix && C.is_unix;
	c->connecting = connecting;
	for (int i = 0; i < 2; i++) {
		c->s[i].kind = 1;
		c->s[i].conn = c;
		c->s[i].which = i;
		c->s[i].fd = i == 0 ? client : target;
	}
	if (proxy_protocol && !C.is_unix && C.type == SOCK_STREAM)
		add_proxy_header(c, client);
	watch(&c->s[0], 0, EPOLL_CTL_ADD);
	watch(&c->s[1], 0, EPOLL_CTL_ADD);
	update(c);
}

static void on_conn(struct side *s, unsigned int events) {
	struct conn *c = s->conn;
	int i = s->which;
	if (i == 1 && c->connecting) {
		int err = 0;
		socklen_t el = sizeof err;
		getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &el);
		if (err) {
			log_line("Warning: Failed to connect to target: %s", strerror(err));
			close_conn(c);
			return;
		}
		c->connecting = false;
	}
	if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
		if (fill_from(c, i) < 0 || flush_to(c, 1 - i) < 0) {
			close_conn(c);
			return;
		}
	}
	if (events & EPOLLOUT) {
		if (flush_to(c, i) < 0) {
			close_conn(c);
			return;
		}
	}
	if ((events & (EPOLLHUP | EPOLLERR)) && !(events & EPOLLIN) && c->buf[i].end == c->buf[i].start)
		c->eof[i] = true;
	update(c);
}

static bool same_addr(const struct sockaddr_storage *a, socklen_t al, const struct sockaddr_storage *b, socklen_t bl) {
	return al == bl && memcmp(a, b, al) == 0;
}

static void on_udp_listener(struct listener *l) {
	char buf[BUF_SIZE];
	for (;;) {
		struct sockaddr_storage from;
		socklen_t fl = sizeof from;
		memset(&from, 0, sizeof from);
		ssize_t n = recvfrom(l->side.fd, buf, sizeof buf, MSG_DONTWAIT, (struct sockaddr *)&from, &fl);
		if (n < 0)
			return;
		struct udp_session *s = sessions;
		while (s && !(s->listener == l && same_addr(&s->client, s->client_len, &from, fl)))
			s = s->next;
		if (!s) {
			struct sockaddr_storage ss;
			socklen_t len = make_sockaddr(&C, connect_index(l->index), &ss);
			int fd = socket(ss.ss_family, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
			if (fd < 0 || connect(fd, (struct sockaddr *)&ss, len) < 0) {
				log_line("Warning: Failed to connect to target: %s", strerror(errno));
				if (fd >= 0)
					close(fd);
				continue;
			}
			s = calloc(1, sizeof *s);
			s->side.kind = 2;
			s->side.fd = fd;
			s->listener = l;
			s->client = from;
			s->client_len = fl;
			s->next = sessions;
			sessions = s;
			watch(&s->side, EPOLLIN, EPOLL_CTL_ADD);
		}
		s->last = time(NULL);
		send(s->side.fd, buf, (size_t)n, MSG_DONTWAIT);
	}
}

static void on_udp_session(struct udp_session *s) {
	char buf[BUF_SIZE];
	for (;;) {
		ssize_t n = recv(s->side.fd, buf, sizeof buf, MSG_DONTWAIT);
		if (n < 0)
			return;
		s->last = time(NULL);
		sendto(s->listener->side.fd, buf, (size_t)n, MSG_DONTWAIT, (struct sockaddr *)&s->client, s->client_len);
	}
}

static void expire_sessions(void) {
	time_t now = time(NULL);
	for (struct udp_session **p = &sessions; *p;) {
		struct udp_session *s = *p;
		if (now - s->last > UDP_IDLE_SECONDS) {
			*p = s->next;
			epoll_ctl(ep, EPOLL_CTL_DEL, s->side.fd, NULL);
			close(s->side.fd);
			free(s);
		} else
			p = &s->next;
	}
}

static void remove_listen_socket(void) {
	if (listen_dir < 0)
		return;
	struct stat st;
	if (fstatat(listen_dir, listen_base, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISSOCK(st.st_mode))
		unlinkat(listen_dir, listen_base, 0);
}

int main(int argc, char **argv) {
	if (argc != 16) {
		fprintf(stderr, "usage: nodelxd-proxy LPID LPROTO LADDR LPORTS CPID CPROTO CADDR CPORTS UID GID MODE SECUID SECGID PROXYPROTO WATCHPID\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (fcntl(status_fd, F_GETFD) < 0)
		status_fd = -1;
	else
		fcntl(status_fd, F_SETFD, FD_CLOEXEC);
	setsid();
	signal(SIGPIPE, SIG_IGN);
	pid_t lpid = (pid_t)atoi(argv[1]), cpid = (pid_t)atoi(argv[5]), wpid = (pid_t)atoi(argv[15]);
	parse_endpoint(&L, argv[2], argv[3], argv[4]);
	parse_endpoint(&C, argv[6], argv[7], argv[8]);
	proxy_protocol = strcmp(argv[14], "true") == 0;
	if (L.type == SOCK_DGRAM && (C.type != SOCK_DGRAM || C.is_unix))
		die("Proxying from udp to non-udp protocol is not supported");
	if (!L.is_unix && !C.is_unix && C.nports > 1 && C.nports != L.nports)
		die("Invalid port range");
	if (L.is_unix && C.nports > 1)
		die("Invalid port range");

	// Watch the container's init from the start: the relay ends with it.
	int watchfd = wpid > 0 ? pidfd_open_(wpid) : -1;
	if (wpid > 0 && watchfd < 0)
		die("%s - Failed to watch the instance's init process %d", strerror(errno), wpid);

	int sk[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sk) < 0)
		die("%s - Failed to create a socket pair", strerror(errno));
	pid_t child = fork();
	if (child < 0)
		die("%s - Failed to create new process", strerror(errno));
	if (child == 0) {
		close(sk[0]);
		if (status_fd >= 0)
			close(status_fd);
		status_fd = -1;
		listen_side(sk[1], lpid, &L, argv[9], argv[10], argv[11]);
	}
	close(sk[1]);
	int nl = L.is_unix ? 1 : L.nports;
	struct listener *listeners = calloc((size_t)nl, sizeof *listeners);
	int got = 0;
	for (;;) {
		char msg[1100];
		int fd;
		ssize_t n = recv_msg(sk[0], msg, sizeof msg - 1, &fd);
		if (n <= 0) {
			waitpid(child, NULL, 0);
			die("Failed to receive the listening sockets");
		}
		msg[n] = '\0';
		if (msg[0] == 'E') {
			waitpid(child, NULL, 0);
			die("%s", msg + 1);
		}
		if (msg[0] == 'F' && fd >= 0 && got < nl) {
			listeners[got].side.kind = 0;
			listeners[got].side.fd = fd;
			listeners[got].index = got;
			got++;
		} else if (msg[0] == 'D' && fd >= 0) {
			listen_dir = fd;
			char *copy = strdup(L.addr);
			snprintf(listen_base, sizeof listen_base, "%s", basename(copy));
			free(copy);
		} else if (msg[0] == 'K')
			break;
		else if (fd >= 0)
			close(fd);
	}
	close(sk[0]);
	waitpid(child, NULL, 0);
	if (got != nl)
		die("Failed to receive the listening sockets");

	if (cpid > 0)
		enter(cpid, C.is_unix && !C.abstract);

	long sgid = argv[13][0] ? strtol(argv[13], NULL, 10) : 0, suid = argv[12][0] ? strtol(argv[12], NULL, 10) : 0;
	if (suid != 0 || sgid != 0) {
		setgroups(0, NULL);
		if (setgid((gid_t)sgid) < 0 || setuid((uid_t)suid) < 0)
			die("Failed to switch to uid %ld and gid %ld", suid, sgid);
	}

	ep = epoll_create1(EPOLL_CLOEXEC);
	for (int i = 0; i < nl; i++)
		watch(&listeners[i].side, EPOLLIN, EPOLL_CTL_ADD);
	sigset_t mask;
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	struct side sigside = {.kind = 3, .fd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK)};
	watch(&sigside, EPOLLIN, EPOLL_CTL_ADD);
	struct side watchside = {.kind = 4, .fd = watchfd};
	if (watchfd >= 0)
		watch(&watchside, EPOLLIN, EPOLL_CTL_ADD);

	// This line tells the daemon (and LXD's tests) that the relay runs.
	log_line("Status: Started");
	if (status_fd >= 0) {
		dprintf(status_fd, "ok\n");
		close(status_fd);
		status_fd = -1;
	}

	for (;;) {
		struct epoll_event evs[64];
		int n = epoll_wait(ep, evs, 64, sessions ? 60 * 1000 : -1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			log_line("Error: Failed to wait on epoll instance");
			break;
		}
		bool stop = false;
		for (int i = 0; i < n && !stop; i++) {
			struct side *s = evs[i].data.ptr;
			switch (s->kind) {
			case 0:
				if (L.type == SOCK_DGRAM)
					on_udp_listener((struct listener *)s);
				else
					for (int k = 0; k < 64; k++)
						accept_one((struct listener *)s);
				break;
			case 1:
				if (!s->conn->closed)
					on_conn(s, evs[i].events);
				break;
			case 2:
				on_udp_session((struct udp_session *)s);
				break;
			case 3:
				log_line("Status: Stopping proxy");
				stop = true;
				break;
			case 4:
				log_line("Status: Instance stopped, stopping proxy");
				stop = true;
				break;
			}
		}
		bury();
		if (stop)
			break;
		if (sessions)
			expire_sessions();
	}
	remove_listen_socket();
	return 0;
}
