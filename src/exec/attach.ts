// Running a command inside an instance: the program and arguments come from its driver's
// attach target (for containers the native attach helper, which enters the namespaces and
// cgroup as upstream's forkexec does); here the command lookup and the attached pid.
import { closeSync, fstatSync, readFileSync, readdirSync, readlinkSync } from "node:fs";
import { posix } from "node:path";
import { InstanceRoot, O_PATH } from "../files/in-root.js";

export type { CommandSpec as AttachSpec } from "../instances/runtime-port.js";

export type Lookup = "found" | "not-found" | "not-executable";

function probe(root: InstanceRoot, path: string): Lookup {
  let fd: number;
  try {
    fd = root.open(path, O_PATH);
  } catch {
    return "not-found";
  }
  try {
    const st = fstatSync(fd);
    return st.isFile() && (st.mode & 0o111) !== 0 ? "found" : "not-executable";
  } finally {
    closeSync(fd);
  }
}

/** execvp(3)'s search, done in the container's filesystem before anything is spawned. */
export function lookupCommand(root: InstanceRoot, command: string, pathVar: string, cwd: string): Lookup {
  if (command === "") return "not-found";
  if (command.includes("/")) return probe(root, posix.resolve(cwd, command));
  let result: Lookup = "not-found";
  for (const dir of pathVar.split(":")) {
    const r = probe(root, posix.resolve(cwd, dir || ".", command));
    if (r === "found") return r;
    if (r === "not-executable") result = r;
  }
  return result;
}

const ownPidNs = (() => {
  try {
    return readlinkSync("/proc/self/ns/pid");
  } catch {
    return "";
  }
})();

function children(pid: number): number[] {
  const out: number[] = [];
  try {
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      for (const c of readFileSync(`/proc/${pid}/task/${tid}/children`, "utf8").trim().split(/\s+/)) if (c) out.push(Number(c));
    }
  } catch {
    /* gone */
  }
  return out;
}

/** The host pid of the attached command: the helper's first descendant in another pid namespace. */
export function attachedPid(attachPid: number): number | undefined {
  const queue = children(attachPid);
  while (queue.length) {
    const pid = queue.shift()!;
    try {
      if (readlinkSync(`/proc/${pid}/ns/pid`) !== ownPidNs) return pid;
    } catch {
      continue;
    }
    queue.push(...children(pid));
  }
  return undefined;
}
