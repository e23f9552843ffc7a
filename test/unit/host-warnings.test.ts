import { describe, expect, it } from "vitest";
import { hostWarnings, WARNING_TYPES, type HostFacts } from "../../src/daemon/host-warnings.js";
import { parseCgroupLayout } from "../../src/instances/lxc/cgroup.js";

// This host's layout: v1 controllers, hugetlb on the unified hierarchy, no net_prio, no blkio.weight.
const HYBRID = [
  "cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0",
  "cgroup /sys/fs/cgroup/cpuacct cgroup rw,relatime,cpuacct 0 0",
  "cgroup /sys/fs/cgroup/cpuset cgroup rw,relatime,cpuset 0 0",
  "cgroup /sys/fs/cgroup/memory cgroup rw,relatime,memory 0 0",
  "cgroup /sys/fs/cgroup/devices cgroup rw,relatime,devices 0 0",
  "cgroup /sys/fs/cgroup/freezer cgroup rw,relatime,freezer 0 0",
  "cgroup /sys/fs/cgroup/blkio cgroup rw,relatime,blkio 0 0",
  "cgroup /sys/fs/cgroup/pids cgroup rw,relatime,pids 0 0",
  "cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0",
].join("\n");

const facts = (files: string[], over: Partial<HostFacts> = {}): HostFacts => ({
  layout: parseCgroupLayout(HYBRID, "hugetlb"),
  exists: (p) => files.includes(p),
  appArmorDisabledByEnv: false,
  appArmorParser: true,
  ...over,
});

describe("host warnings (as LXD 5.0.2 raises them)", () => {
  it("on this kind of host: the four real LXD reports (no AppArmor, no blkio.weight, no net_prio, no KVM)", () => {
    const w = hostWarnings(facts(["/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes"]));
    expect(w.map((x) => [x.type.name, x.message])).toEqual([
      ["AppArmor support has been disabled", "Disabled because of lack of kernel support"],
      ["Couldn't find the CGroup blkio.weight", "disk priority will be ignored"],
      ["Couldn't find the CGroup network priority controller", "network priority will be ignored"],
      ["Instance type not operational", "KVM support is missing (no /dev/kvm)"],
    ]);
  });
  it("AppArmor: env switch, then kernel support, then the parser", () => {
    const base = ["/sys/kernel/security/apparmor", "/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes", "/sys/fs/cgroup/blkio/blkio.weight", "/dev/kvm"];
    const aa = (f: HostFacts) => hostWarnings(f).filter((x) => x.type === WARNING_TYPES.appArmorNotAvailable).map((x) => x.message);
    expect(aa(facts(base))).toEqual([]);
    expect(aa(facts(base, { appArmorParser: false }))).toEqual(["Disabled because 'apparmor_parser' couldn't be found"]);
    expect(aa(facts(base, { appArmorDisabledByEnv: true }))).toEqual(["Manually disabled"]);
  });
  it("missing controllers and swap accounting", () => {
    const w = hostWarnings({ ...facts([]), layout: parseCgroupLayout("cgroup /sys/fs/cgroup/memory cgroup rw,memory 0 0", "") });
    const messages = w.map((x) => x.message);
    expect(messages).toContain("CPU time limits will be ignored");
    expect(messages).toContain("CPU pinning will be ignored");
    expect(messages).toContain("process limits will be ignored");
    expect(messages).toContain("swap limits will be ignored");
    expect(messages).not.toContain("memory limits will be ignored");
  });
});
