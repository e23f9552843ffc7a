// Architecture names as LXD's osarch spells them, from the aliases image servers use.
const NAMES: Record<string, string> = {
  i686: "i686", i386: "i686", x86: "i686",
  x86_64: "x86_64", amd64: "x86_64",
  armv6l: "armv6l", armel: "armv6l",
  armv7l: "armv7l", armhf: "armv7l", arm: "armv7l",
  aarch64: "aarch64", arm64: "aarch64", armv8: "aarch64",
  ppc: "ppc", powerpc: "ppc",
  ppc64: "ppc64", powerpc64: "ppc64",
  ppc64le: "ppc64le", ppc64el: "ppc64le",
  mips: "mips", mips64: "mips64",
  s390x: "s390x",
  riscv64: "riscv64",
};

/** LXD's name for an architecture, or undefined when LXD does not know it. */
export function architectureName(name: string): string | undefined {
  return Object.hasOwn(NAMES, name) ? NAMES[name] : undefined;
}

const NODE_ARCH: Record<string, string> = { x64: "x86_64", ia32: "i686", arm64: "aarch64", arm: "armv7l", ppc64: "ppc64le", s390x: "s390x", riscv64: "riscv64" };

export function hostArchitecture(): string {
  return NODE_ARCH[process.arch] ?? process.arch;
}
