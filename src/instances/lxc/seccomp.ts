// The liblxc seccomp policy LXD writes for a container (security/seccomp/<name>), from the
// security.syscalls.* keys (and their older whitelist/blacklist names) or raw.seccomp.
// Syscall interception (security.syscalls.intercept.*) needs LXD's notify proxy and is not
// generated here.
import { isTrue } from "../config-keys.js";

const HEADER = "2\n";

const DEFAULT_DENY = [
  "reject_force_umount  # comment this to allow umount -f;  not recommended",
  "[all]",
  "kexec_load errno 38",
  "open_by_handle_at errno 38",
  "init_module errno 38",
  "finit_module errno 38",
  "delete_module errno 38",
  "",
].join("\n");

const COMPAT_SYSCALLS = [
  "compat_sys_rt_sigaction", "stub_x32_rt_sigreturn", "compat_sys_ioctl", "compat_sys_readv", "compat_sys_writev",
  "compat_sys_recvfrom", "compat_sys_sendmsg", "compat_sys_recvmsg", "stub_x32_execve", "compat_sys_ptrace",
  "compat_sys_rt_sigpending", "compat_sys_rt_sigtimedwait", "compat_sys_rt_sigqueueinfo", "compat_sys_sigaltstack",
  "compat_sys_timer_create", "compat_sys_mq_notify", "compat_sys_kexec_load", "compat_sys_waitid",
  "compat_sys_set_robust_list", "compat_sys_get_robust_list", "compat_sys_vmsplice", "compat_sys_move_pages",
  "compat_sys_preadv64", "compat_sys_pwritev64", "compat_sys_rt_tgsigqueueinfo", "compat_sys_recvmmsg",
  "compat_sys_sendmmsg", "compat_sys_process_vm_readv", "compat_sys_process_vm_writev", "compat_sys_setsockopt",
  "compat_sys_getsockopt", "compat_sys_io_setup", "compat_sys_io_submit", "stub_x32_execveat",
];

/** The first of `keys` present in config (the current name before the older alias). */
function firstPresent(config: Record<string, string>, ...keys: string[]): string | undefined {
  for (const k of keys) if (k in config) return config[k];
  return undefined;
}

/** Whether LXD writes a policy (and sets lxc.seccomp.profile) for this expanded config. */
export function needsSeccompPolicy(config: Record<string, string>): boolean {
  const textKeys = ["raw.seccomp", "security.syscalls.allow", "security.syscalls.deny", "security.syscalls.whitelist", "security.syscalls.blacklist"];
  if (textKeys.some((k) => k in config)) return true;
  const flags = [
    "security.syscalls.deny_compat",
    "security.syscalls.blacklist_compat",
    "security.syscalls.intercept.mknod",
    "security.syscalls.intercept.sched_setscheduler",
    "security.syscalls.intercept.setxattr",
    "security.syscalls.intercept.mount",
    "security.syscalls.intercept.bpf",
  ];
  if (flags.some((k) => isTrue(config[k]))) return true;
  const denyDefault = firstPresent(config, "security.syscalls.deny_default", "security.syscalls.blacklist_default");
  return denyDefault === undefined || isTrue(denyDefault);
}

/**
 * The policy text, as LXD 5.0.2 builds it: raw.seccomp verbatim; else an allowlist of
 * security.syscalls.allow; else a denylist of the default rules (security.syscalls.deny_default,
 * on unless false), the compat syscalls of the architecture (deny_compat) and
 * security.syscalls.deny. A listed syscall without an action gets liblxc's default rule action
 * (kill for a denylist, allow for an allowlist).
 */
export function seccompPolicy(config: Record<string, string> = {}, architecture = "x86_64"): string {
  const raw = config["raw.seccomp"];
  if (raw) return raw;
  let policy = HEADER;
  const allow = config["security.syscalls.allow"] || config["security.syscalls.whitelist"] || "";
  if (allow !== "") return policy + "allowlist\n[all]\n" + allow;
  policy += "denylist\n[all]\n";
  const denyDefault = firstPresent(config, "security.syscalls.deny_default", "security.syscalls.blacklist_default");
  if (denyDefault === undefined || isTrue(denyDefault)) policy += DEFAULT_DENY;
  const compat = firstPresent(config, "security.syscalls.deny_compat", "security.syscalls.blacklist_compat");
  if (isTrue(compat)) policy += `[${architecture}]\n` + COMPAT_SYSCALLS.map((s) => `${s} errno 38\n`).join("");
  const deny = firstPresent(config, "security.syscalls.deny", "security.syscalls.blacklist");
  if (deny) policy += deny;
  return policy;
}
