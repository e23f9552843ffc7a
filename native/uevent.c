/*
 * nodelxd-uevent: kernel uevents for the daemon's device hotplug (LXD listens to the same
 * NETLINK_KOBJECT_UEVENT socket in-process; Node has no netlink sockets).
 *
 *   nodelxd-uevent listen
 *     Joins the kernel's uevent multicast group and writes every message to stdout as a
 *     4-byte little-endian length and the message itself (its NUL-separated fields). Ends when
 *     stdout goes away or the parent dies.
 *
 *   nodelxd-uevent inject PID FIELD...
 *     Enters the network namespace of process PID and sends one uevent (the FIELDs joined by
 *     NULs, "ACTION@DEVPATH" first) to the kernel, which broadcasts it to that namespace's
 *     listeners (LXD's forkuevent inject). Requires CAP_SYS_ADMIN over that namespace.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/netlink.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef NETLINK_KOBJECT_UEVENT
#define NETLINK_KOBJECT_UEVENT 15
#endif
#ifndef UEVENT_SEND
#define UEVENT_SEND 16
#endif

static int write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int do_listen(void)
{
	struct sockaddr_nl addr;
	static char buf[64 * 1024];
	int size = 4 * 1024 * 1024;
	int fd;

	if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() == 1)
		return 1;
	fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_KOBJECT_UEVENT);
	if (fd < 0) {
		perror("socket");
		return 1;
	}
	(void)setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(size));
	memset(&addr, 0, sizeof(addr));
	addr.nl_family = AF_NETLINK;
	addr.nl_groups = 1; /* kernel uevents */
	if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
		perror("bind");
		return 1;
	}
	/* Tell the daemon the socket is bound (an empty record). */
	uint32_t zero = 0;
	if (write_all(STDOUT_FILENO, &zero, sizeof(zero)) < 0)
		return 0;
	for (;;) {
		ssize_t n = recv(fd, buf, sizeof(buf), 0);
		if (n < 0) {
			if (errno == EINTR || errno == ENOBUFS)
				continue;
			perror("recv");
			return 1;
		}
		if (n == 0)
			continue;
		uint32_t len = (uint32_t)n;
		unsigned char hdr[4] = { len & 0xff, (len >> 8) & 0xff, (len >> 16) & 0xff, (len >> 24) & 0xff };
		if (write_all(STDOUT_FILENO, hdr, 4) < 0 || write_all(STDOUT_FILENO, buf, (size_t)n) < 0)
			return 0;
	}
}

static int do_inject(int argc, char **argv)
{
	char path[64];
	struct sockaddr_nl kernel;
	size_t len = 0;
	char *msg, *p;
	int nsfd, fd;
	char *end;
	long pid;

	if (argc < 4)
		return 2;
	pid = strtol(argv[2], &end, 10);
	if (*end != '\0' || pid <= 0)
		return 2;
	for (int i = 3; i < argc; i++)
		len += strlen(argv[i]) + 1;
	if (len > 8192) {
		fprintf(stderr, "uevent too long\n");
		return 2;
	}
	snprintf(path, sizeof(path), "/proc/%ld/ns/net", pid);
	nsfd = open(path, O_RDONLY | O_CLOEXEC);
	if (nsfd < 0 || setns(nsfd, CLONE_NEWNET) < 0) {
		perror("setns");
		return 1;
	}
	close(nsfd);
	fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_KOBJECT_UEVENT);
	if (fd < 0) {
		perror("socket");
		return 1;
	}
	/* A netlink message to the kernel (pid 0): header, then the NUL-separated fields. */
	msg = calloc(1, NLMSG_SPACE(len));
	if (!msg)
		return 1;
	struct nlmsghdr *hdr = (struct nlmsghdr *)msg;
	hdr->nlmsg_len = NLMSG_HDRLEN + len;
	hdr->nlmsg_type = UEVENT_SEND;
	hdr->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
	p = NLMSG_DATA(hdr);
	for (int i = 3; i < argc; i++) {
		size_t l = strlen(argv[i]) + 1;
		memcpy(p, argv[i], l);
		p += l;
	}
	memset(&kernel, 0, sizeof(kernel));
	kernel.nl_family = AF_NETLINK;
	if (sendto(fd, msg, hdr->nlmsg_len, 0, (struct sockaddr *)&kernel, sizeof(kernel)) < 0) {
		perror("sendto");
		return 1;
	}
	/* The kernel acknowledges (error 0) or says why not. */
	char ack[512];
	ssize_t n = recv(fd, ack, sizeof(ack), 0);
	if (n >= (ssize_t)NLMSG_LENGTH(sizeof(struct nlmsgerr))) {
		struct nlmsghdr *r = (struct nlmsghdr *)ack;
		if (r->nlmsg_type == NLMSG_ERROR) {
			struct nlmsgerr *e = NLMSG_DATA(r);
			if (e->error != 0) {
				fprintf(stderr, "inject: %s\n", strerror(-e->error));
				return 1;
			}
		}
	}
	return 0;
}

int main(int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "listen") == 0)
		return do_listen();
	if (argc >= 2 && strcmp(argv[1], "inject") == 0)
		return do_inject(argc, argv);
	fprintf(stderr, "usage: nodelxd-uevent listen | inject PID FIELD...\n");
	return 2;
}
