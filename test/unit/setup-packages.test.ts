// Every program that the daemon or a test spawns must come from a Debian package that
// scripts/setup.sh installs (or from an Essential package every Debian 12 host has), so that
// `scripts/setup.sh && npm test` passes on a fresh host. A new spawned command fails this test
// until it is added to the table below and its package to setup.sh.
import { readFileSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";

const ROOT = join(import.meta.dirname, "../..");

/** Command → the Debian 12 package that ships it. */
const PACKAGE_OF: Record<string, string> = {
  btrfs: "btrfs-progs", "mkfs.btrfs": "btrfs-progs",
  busybox: "busybox-static",
  etcd: "etcd-server", etcdctl: "etcd-client",
  dnsmasq: "dnsmasq-base",
  getfattr: "attr", setfattr: "attr",
  ip: "iproute2", tc: "iproute2",
  losetup: "mount", mount: "mount", umount: "mount",
  lxc: "lxd-client", lxd: "lxd",
  "lxc-checkpoint": "lxc", "lxc-console": "lxc", "lxc-info": "lxc", "lxc-ls": "lxc", "lxc-start": "lxc", "lxc-stop": "lxc", "lxc-wait": "lxc",
  modprobe: "kmod",
  nft: "nftables",
  openssl: "openssl",
  "ovs-vsctl": "openvswitch-switch",
  script: "bsdutils",
  sftp: "openssh-client", sshfs: "sshfs",
  tcpdump: "tcpdump",
  xz: "xz-utils", zstd: "zstd", bzip2: "bzip2", gzip: "gzip", tar: "tar",
  file: "file",
  sqlite3: "sqlite3",
  python3: "python3",
  unsquashfs: "squashfs-tools", mksquashfs: "squashfs-tools",
  rsync: "rsync",
  gcc: "build-essential",
  curl: "curl",
  dig: "bind9-dnsutils",
  gobgpd: "gobgpd", gobgp: "gobgpd",
  go: "golang-go", // builds the Candid identity service of test/host/candid-auth.test.ts
  swtpm: "swtpm", // run by tpm devices (src/devices/tpm.ts) through HelperProcess, which this scan does not see
  ceph: "ceph-common", rbd: "ceph-common", "ceph-fuse": "ceph-fuse",
  lvm: "lvm2", pvcreate: "lvm2", pvremove: "lvm2", vgcreate: "lvm2", vgremove: "lvm2", vgchange: "lvm2", vgrename: "lvm2", lvcreate: "lvm2", lvremove: "lvm2", lvrename: "lvm2", lvresize: "lvm2", lvchange: "lvm2",
  "mkfs.ext4": "e2fsprogs", resize2fs: "e2fsprogs", e2fsck: "e2fsprogs", chattr: "e2fsprogs", lsattr: "e2fsprogs", // chattr +C: nodatacow on btrfs block volumes
  "mkfs.xfs": "xfsprogs", xfs_growfs: "xfsprogs",
  // zfs/zpool: Debian main has no zfsutils; the driver reports itself unsupported without them.
  zfs: "", zpool: "",
  // nvidia-container-cli (libnvidia-container): not in Debian main; without it LXD (and we) read /proc's NVIDIA cards.
  "nvidia-container-cli": "",
  // Essential (every Debian host): coreutils, util-linux, dash.
  chmod: "", chown: "", cp: "", ls: "", mkdir: "", mkfifo: "", du: "", mv: "", rm: "", stat: "", sha256sum: "", md5sum: "",
  cat: "", readlink: "", dd: "", echo: "", test: "", kill: "", cd: "", sh: "", sleep: "",
  mountpoint: "", nsenter: "", truncate: "", blockdev: "", fsfreeze: "", blkid: "", unshare: "", wipefs: "", mknod: "", bash: "", find: "", setpriv: "", which: "", dmesg: "", timeout: "",
};

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((e) => {
    const p = join(dir, e);
    return statSync(p).isDirectory() ? files(p) : /\.(ts|mjs|sh)$/.test(e) ? [p] : [];
  });
}

/** First arguments of the spawning calls, and the compressors' command lists. */
function spawnedCommands(): Map<string, string> {
  const found = new Map<string, string>();
  const call = /\b(?:run|spawnStreaming|spawnService|spawnPty|execa|execaSync|execFileSync|execFile|spawnSync|spawn|sh)\(\s*["'`]([a-zA-Z0-9_.+-]+)["'`]/g;
  const argv = /\[\s*"([a-z0-9_.-]+)",\s*\[/g;
  for (const f of [...files(join(ROOT, "src")), ...files(join(ROOT, "test")), ...files(join(ROOT, "scripts"))]) {
    const text = readFileSync(f, "utf8");
    for (const re of [call, argv]) for (const m of text.matchAll(re)) if (!found.has(m[1])) found.set(m[1], f.slice(ROOT.length + 1));
  }
  return found;
}

function setupPackages(): Set<string> {
  const text = readFileSync(join(ROOT, "scripts/setup.sh"), "utf8");
  const body = /PKGS=\(([\s\S]*?)\n\)/.exec(text)![1];
  return new Set(body.split("\n").flatMap((l) => l.replace(/#.*/, "").trim().split(/\s+/)).filter(Boolean));
}

describe("scripts/setup.sh installs what is spawned", () => {
  it("finds the spawned commands (the scan works)", () => {
    const cmds = spawnedCommands();
    for (const c of ["ip", "nft", "tcpdump", "lxc", "btrfs", "xz"]) expect(cmds.has(c)).toBe(true);
  });

  it("every spawned command has a known package, and setup.sh installs it", () => {
    const pkgs = setupPackages();
    const problems: string[] = [];
    for (const [cmd, where] of spawnedCommands()) {
      const pkg = PACKAGE_OF[cmd];
      if (pkg === undefined) problems.push(`${cmd} (spawned in ${where}) has no package in this test's table`);
      else if (pkg !== "" && !pkgs.has(pkg)) problems.push(`${cmd}: package ${pkg} is not in setup.sh's PKGS`);
    }
    expect(problems).toEqual([]);
  });
});
