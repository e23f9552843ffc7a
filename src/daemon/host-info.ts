// Facts about the host served in GET /1.0 `environment`, read once at start from files
// (and liblxc's lxc_get_version(), as LXD's liblxc.Version(): no process spawned), never per request.
import { idmappedMountsDisabled } from "../os/idmapped.js";
import { existsSync, readFileSync } from "node:fs";
import { arch, hostname, release } from "node:os";
import { native } from "../os/native.js";

export interface HostInfo {
  architectures: string[];
  kernel: string;
  kernel_architecture: string;
  kernel_version: string;
  kernel_features: Record<string, string>;
  lxc_features: Record<string, string>;
  driver: string;
  driver_version: string;
  firewall: string;
  os_name: string;
  os_version: string;
  server_name: string;
}

const KERNEL_ARCH: Record<string, string> = { x64: "x86_64", arm64: "aarch64", arm: "armv7l", ppc64: "ppc64le", s390x: "s390x", riscv64: "riscv64" };
// Personalities each architecture can also run.
const PERSONALITIES: Record<string, string[]> = { x86_64: ["i686"], aarch64: ["armv7l", "armv8l"], ppc64le: [], s390x: [] };

function osRelease(): { name: string; version: string } {
  try {
    const text = readFileSync("/etc/os-release", "utf8");
    const get = (k: string) => new RegExp(`^${k}="?([^"\\n]*)"?$`, "m").exec(text)?.[1] ?? "";
    return { name: get("NAME"), version: get("VERSION_ID") };
  } catch {
    return { name: "", version: "" };
  }
}

function readTrim(file: string): string | undefined {
  try {
    return readFileSync(file, "utf8").trim();
  } catch {
    return undefined;
  }
}

function kernelFeatures(): Record<string, string> {
  const [major, minor] = release().split(".").map(Number);
  const atLeast = (a: number, b: number) => major > a || (major === a && minor >= b);
  const b = (v: boolean) => String(v);
  const unprivUserns = readTrim("/proc/sys/kernel/unprivileged_userns_clone");
  return {
    idmapped_mounts: b(atLeast(5, 12) && !idmappedMountsDisabled()),
    netnsid_getifaddrs: b(atLeast(4, 20)),
    seccomp_listener: b(atLeast(5, 0)),
    seccomp_listener_continue: b(atLeast(5, 5)),
    shiftfs: "false",
    uevent_injection: b(atLeast(4, 13)),
    unpriv_fscaps: b(atLeast(4, 14) && unprivUserns !== "0"),
  };
}

/** liblxc API extensions by the first release that has them. */
const LXC_FEATURES: [string, number][] = [
  ["cgroup2", 4],
  ["core_scheduling", 5],
  ["devpts_fd", 4],
  ["idmapped_mounts_v2", 5],
  ["mount_injection_file", 3],
  ["network_gateway_device_route", 4],
  ["network_ipvlan", 3],
  ["network_l2proxy", 3],
  ["network_phys_macvlan_mtu", 3],
  ["network_veth_router", 3],
  ["pidfd", 4],
  ["seccomp_allow_deny_syntax", 4],
  ["seccomp_notify", 3],
  ["seccomp_proxy_send_notify_fd", 4],
];

export function readHostInfo(): HostInfo {
  const kernelArch = KERNEL_ARCH[arch()] ?? arch();
  const os = osRelease();
  const lxcVersion = native.liblxcVersion() ?? "";
  const lxcMajor = Number(lxcVersion.split(".")[0]) || 0;
  const firewall = ["/usr/sbin/nft", "/sbin/nft", "/usr/bin/nft"].some(existsSync) ? "nftables" : "xtables";
  return {
    architectures: [kernelArch, ...(PERSONALITIES[kernelArch] ?? [])],
    kernel: "Linux",
    kernel_architecture: kernelArch,
    kernel_version: release(),
    kernel_features: kernelFeatures(),
    lxc_features: Object.fromEntries(LXC_FEATURES.map(([name, since]) => [name, String(lxcMajor >= since)])),
    driver: "lxc",
    driver_version: lxcVersion,
    firewall,
    os_name: os.name,
    os_version: os.version,
    server_name: hostname(),
  };
}
