// Warnings about the host, recorded at daemon start as LXD 5.0.2 records them (lxd/sys/apparmor.go,
// lxd/cgroup/init.go Warnings(), lxd/instance/drivers/load.go): the same types, codes, severities
// and messages, so `lxc warning list` tells users what here does not work.
import { existsSync } from "node:fs";
import { join } from "node:path";
import { controllerVersion, cgroupDir, type CgroupLayout } from "../instances/lxc/cgroup.js";

export interface WarningType {
  code: number;
  name: string;
  severity: "low" | "moderate" | "high";
}

/** LXD 5.0.2's lxd/db/warningtype codes (the subset we raise). */
export const WARNING_TYPES = {
  undefined: { code: 0, name: "Undefined warning", severity: "low" },
  missingBlkio: { code: 1, name: "Couldn't find the CGroup blkio", severity: "low" },
  missingBlkioWeight: { code: 2, name: "Couldn't find the CGroup blkio.weight", severity: "low" },
  missingCpu: { code: 3, name: "Couldn't find the CGroup CPU controller", severity: "low" },
  missingCpuacct: { code: 5, name: "Couldn't find the CGroup CPUacct controller", severity: "low" },
  missingDevices: { code: 6, name: "Couldn't find the CGroup devices controller", severity: "low" },
  missingFreezer: { code: 7, name: "Couldn't find the CGroup freezer controller", severity: "low" },
  missingHugetlb: { code: 8, name: "Couldn't find the CGroup hugetlb controller", severity: "low" },
  missingMemory: { code: 9, name: "Couldn't find the CGroup memory controller", severity: "low" },
  missingNetPrio: { code: 10, name: "Couldn't find the CGroup network priority controller", severity: "low" },
  missingPids: { code: 11, name: "Couldn't find the CGroup pids controller", severity: "low" },
  missingSwap: { code: 12, name: "Couldn't find the CGroup memory swap accounting", severity: "low" },
  appArmorNotAvailable: { code: 14, name: "AppArmor support has been disabled", severity: "low" },
  instanceAutostartFailure: { code: 22, name: "Failed to autostart instance", severity: "low" },
  instanceTypeNotOperational: { code: 23, name: "Instance type not operational", severity: "low" },
} as const satisfies Record<string, WarningType>;

/** Every LXD 5.0.2 warning type, indexed by its code (lxd/db/warningtype/warning_type.go). */
export const ALL_WARNING_TYPES: readonly WarningType[] = [
  "Undefined warning",
  "Couldn't find the CGroup blkio",
  "Couldn't find the CGroup blkio.weight",
  "Couldn't find the CGroup CPU controller",
  "Couldn't find the CGroup CPUset controller",
  "Couldn't find the CGroup CPUacct controller",
  "Couldn't find the CGroup devices controller",
  "Couldn't find the CGroup freezer controller",
  "Couldn't find the CGroup hugetlb controller",
  "Couldn't find the CGroup memory controller",
  "Couldn't find the CGroup network priority controller",
  "Couldn't find the CGroup pids controller",
  "Couldn't find the CGroup memory swap accounting",
  "Time skew detected between leader and local",
  "AppArmor support has been disabled",
  "Missing virtiofsd",
  "Unable to connect to MAAS",
  "Skipping AppArmor for dnsmasq due to raw.dnsmasq being set",
  "IPv6 networks with a prefix larger than 64 aren't properly supported by dnsmasq",
  "Proxy bridge netfilter not enabled",
  "Network unavailable",
  "Offline cluster member",
  "Failed to autostart instance",
  "Instance type not operational",
  "Storage pool unavailable",
].map((name, code) => ({ code, name, severity: code === 20 || code === 24 ? "high" : "low" }));

export interface HostFacts {
  layout: CgroupLayout;
  /** whether a path exists (injected for tests) */
  exists: (path: string) => boolean;
  /** LXD_SECURITY_APPARMOR=false */
  appArmorDisabledByEnv: boolean;
  /** apparmor_parser on PATH */
  appArmorParser: boolean;
}

export function hostFacts(layout: CgroupLayout): HostFacts {
  const path = (process.env.PATH ?? "/usr/sbin:/usr/bin:/sbin:/bin").split(":");
  return {
    layout,
    exists: existsSync,
    appArmorDisabledByEnv: process.env.LXD_SECURITY_APPARMOR === "false",
    appArmorParser: path.some((d) => d !== "" && existsSync(join(d, "apparmor_parser"))),
  };
}

/** The host warnings LXD would raise here, in its order. */
export function hostWarnings(f: HostFacts): { type: WarningType; message: string }[] {
  const out: { type: WarningType; message: string }[] = [];
  const add = (type: WarningType, message: string) => out.push({ type, message });
  // AppArmor (lxd/sys/apparmor.go)
  if (f.appArmorDisabledByEnv) add(WARNING_TYPES.appArmorNotAvailable, "Manually disabled");
  else if (!f.exists("/sys/kernel/security/apparmor")) add(WARNING_TYPES.appArmorNotAvailable, "Disabled because of lack of kernel support");
  else if (!f.appArmorParser) add(WARNING_TYPES.appArmorNotAvailable, "Disabled because 'apparmor_parser' couldn't be found");
  // cgroups (lxd/cgroup/init.go)
  const has = (c: string) => controllerVersion(f.layout, c) !== undefined;
  const v1File = (controller: string, file: string) => f.layout.v1.has(controller) && f.exists(join(f.layout.v1.get(controller)!, file));
  if (!has("blkio") && !has("io")) add(WARNING_TYPES.missingBlkio, "disk I/O limits will be ignored");
  if (!v1File("blkio", "blkio.weight") && !has("io")) add(WARNING_TYPES.missingBlkioWeight, "disk priority will be ignored");
  if (!has("cpu")) add(WARNING_TYPES.missingCpu, "CPU time limits will be ignored");
  if (!has("cpuacct") && !has("cpu")) add(WARNING_TYPES.missingCpuacct, "CPU accounting will not be available");
  // LXD files a missing cpuset under the CPU controller's type.
  if (!has("cpuset")) add(WARNING_TYPES.missingCpu, "CPU pinning will be ignored");
  if (!has("devices")) add(WARNING_TYPES.missingDevices, "device access control won't work");
  if (!has("freezer") && controllerVersion(f.layout, "memory") !== "v2") add(WARNING_TYPES.missingFreezer, "pausing/resuming containers won't work");
  if (!has("hugetlb")) add(WARNING_TYPES.missingHugetlb, "hugepage limits will be ignored");
  if (!has("memory")) add(WARNING_TYPES.missingMemory, "memory limits will be ignored");
  if (!f.layout.v1.has("net_prio")) add(WARNING_TYPES.missingNetPrio, "network priority will be ignored");
  if (!has("pids")) add(WARNING_TYPES.missingPids, "process limits will be ignored");
  const swap =
    v1File("memory", "memory.memsw.limit_in_bytes") ||
    (controllerVersion(f.layout, "memory") === "v2" && f.exists(join(cgroupDir(f.layout, process.pid, "memory") ?? "/nonexistent", "memory.swap.max")));
  if (has("memory") && !swap) add(WARNING_TYPES.missingSwap, "swap limits will be ignored");
  // Instance drivers (lxd/instance/drivers/load.go): nodelxd runs containers only.
  if (!f.exists("/dev/kvm")) add(WARNING_TYPES.instanceTypeNotOperational, "KVM support is missing (no /dev/kvm)");
  else add(WARNING_TYPES.instanceTypeNotOperational, "Virtual machines are not supported by this daemon");
  return out;
}
