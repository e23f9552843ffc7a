#!/bin/bash
# Installs what nodelxd needs on Debian 12 (run as root), then builds it.
# Usage: scripts/setup.sh            (daemon + test dependencies)
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
PKGS=(
  lxc lxc-dev lxd lxd-client uidmap            # liblxc tooling (+ headers for native/start.c), reference LXD and its client
  dnsmasq-base nftables iproute2 bridge-utils openvswitch-switch   # networking
  lvm2 thin-provisioning-tools e2fsprogs xfsprogs  # lvm storage driver (thin_check for thin pools; filesystems on its block volumes)
  btrfs-progs xz-utils zstd bzip2 gzip tar squashfs-tools  # storage and images (unsquashfs; mksquashfs builds the test image server's squashfs)
  rsync                                       # storage copies and migration (lxd/rsync as upstream)
  criu                                        # stateful stop/start and snapshots (CRIU, run by liblxc as LXD does)
  busybox-static curl jq python3-pylxd util-linux ca-certificates file  # test image (file checks busybox is static) and harness
  etcd-server etcd-client                                              # clustering: etcd members (test/helpers/cluster.ts), etcdctl (recover-from-quorum-loss from a snapshot)
  tcpdump attr openssl kmod sqlite3 fuse3 mount bsdutils  # spawned by tests or the daemon: tcpdump (networks), getfattr/setfattr (security), openssl (certificates), modprobe (linux.kernel_modules), sqlite3 (LXD's suite, lxd sql checks), script (console)
  build-essential python3                     # node-gyp: node-pty, native/inroot.c and native/start.c
  openssh-client sshfs                        # sftp endpoint tests (sftp -D, lxc file mount)
  bind9-dnsutils                              # dig against the zones' DNS listener (network zones test)
  swtpm                                       # tpm devices: the software TPM the daemon runs per device (needs the tpm_vtpm_proxy module)
  gobgpd                                      # BGP speaker (core.bgp_address): gobgpd run by the daemon, gobgp CLI; the BGP test's peer
  ceph-common ceph-fuse e2fsprogs xfsprogs    # ceph/cephfs drivers: ceph, rbd, ceph-fuse; mkfs/resize of rbd volumes
  ceph-mon ceph-mgr ceph-osd ceph-mds         # the single-node test cluster (test/fixtures/ceph-cluster.sh)
  golang-go golang-github-go-macaroon-bakery-macaroon-bakery-dev  # Candid test: go builds the identity service (test/fixtures/candid-identity) offline on Debian's bakery
)
missing=()
for p in "${PKGS[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
command -v node >/dev/null || { apt-get install -y -qq nodejs npm >/dev/null; }
npm ci --no-audit --no-fund --loglevel=error
npm run build --silent
