// btrfs send/receive streams for optimized transfers (migration and optimized backups), as
// LXD 5.0.2's btrfs driver makes them: a restoration header listing the subvolumes (snapshots
// oldest first, then the volume), then one `btrfs send` stream per subvolume, each snapshot
// incremental on the previous one and the volume on the last snapshot. Received streams are
// untrusted: each is received (chrooted) into its own empty directory of a staging area inside
// the pool and must leave exactly one read-only, received subvolume there and nothing else.
import { lstat, readdir } from "node:fs/promises";
import { join } from "node:path";
import type { Readable } from "node:stream";
import { stringifyYaml } from "../../shared/yaml.js";
import { run, spawnStreaming } from "../../os/exec.js";

/** One subvolume as LXD's BTRFSMetaDataHeader lists it (json/yaml field names are LXD's). */
export interface SubvolumeInfo {
  path: string;
  snapshot: string;
  readonly: boolean;
  uuid: string;
}

/** Every btrfs subvolume root has this inode number. */
export const SUBVOLUME_INODE = 256;

export async function isSubvolume(path: string): Promise<boolean> {
  const st = await lstat(path).catch(() => undefined);
  return !!st && st.isDirectory() && st.ino === SUBVOLUME_INODE;
}

/** Subvolumes nested anywhere below `root` (not `root` itself), deepest first. */
export async function nestedSubvolumes(root: string): Promise<string[]> {
  const found: string[] = [];
  const rootDev = (await lstat(root)).dev;
  const walk = async (dir: string): Promise<void> => {
    const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
    for (const e of entries) {
      if (!e.isDirectory()) continue;
      const p = join(dir, e.name);
      const st = await lstat(p);
      // A nested subvolume shows up with its own anonymous device number.
      if (st.ino === SUBVOLUME_INODE) {
        await walk(p);
        found.push(p);
      } else if (st.dev === rootDev) await walk(p);
    }
  };
  await walk(root);
  return found;
}

export interface SubvolumeFacts {
  uuid: string;
  receivedUuid: string;
  readonly: boolean;
}

/** `btrfs subvolume show` of one subvolume: its UUID, received UUID ("" when none) and read-only flag. */
export async function subvolumeFacts(path: string): Promise<SubvolumeFacts> {
  const out = (await run("btrfs", ["subvolume", "show", path])).stdout;
  const field = (name: string) => new RegExp(`^\\s*${name}:\\s*(\\S*)`, "m").exec(out)?.[1] ?? "";
  const uuid = field("UUID");
  const received = field("Received UUID");
  return { uuid, receivedUuid: received === "-" ? "" : received, readonly: /^\s*Flags:.*\breadonly\b/m.test(out) };
}

export async function setReadonly(path: string, readonly: boolean, force = false): Promise<void> {
  await run("btrfs", ["property", "set", ...(force ? ["-f"] : []), "-ts", path, "ro", String(readonly)]);
}

/** `btrfs send [-p parent] path`, its stdout handed to `consume`; fails with LXD's "Btrfs send failed". */
export async function sendSubvolume(path: string, parent: string, consume: (data: Readable) => Promise<void>, signal?: AbortSignal): Promise<void> {
  const proc = spawnStreaming("btrfs", ["send", ...(parent ? ["-p", parent] : []), path], { stdin: "ignore", signal });
  try {
    await consume(proc.stdout!);
  } catch (e) {
    proc.kill();
    await proc.exited;
    throw e;
  }
  const r = await proc.exited;
  if (r.exitCode !== 0) throw new Error(`Btrfs send failed: exit status ${r.exitCode} (${r.stderr.trim()})`);
}

/**
 * Receive one stream into `dir` (an empty directory of the staging area), chrooted there, and
 * check what arrived: exactly one entry, a read-only subvolume with a received UUID and no
 * subvolume nested in it. The stream is read to its end even when the receiver fails early.
 */
export async function receiveSubvolume(dir: string, data: Readable, signal?: AbortSignal): Promise<string> {
  // No -e: the receiver reads to the end of the stream, so a stream that carries a second
  // subvolume after the first one's end makes it too, and is refused below (with -e the rest
  // would be skipped unseen).
  const proc = spawnStreaming("btrfs", ["receive", "-C", dir], { stdout: "ignore", signal });
  const stdin = proc.stdin!;
  let broken = false;
  stdin.on("error", () => (broken = true));
  stdin.on("close", () => (broken = true));
  for await (const chunk of data) {
    if (broken) continue;
    if (!stdin.write(chunk)) await new Promise<void>((r) => (stdin.once("drain", r), stdin.once("close", r)));
  }
  stdin.end();
  const r = await proc.exited;
  if (r.exitCode !== 0) throw new Error(`Btrfs receive failed: exit status ${r.exitCode} (${r.stderr.trim()})`);
  const entries = await readdir(dir);
  if (entries.length !== 1) throw new Error(`Failed to determine received subvolume: the stream made ${entries.length} entries`);
  const path = join(dir, entries[0]);
  if (!(await isSubvolume(path))) throw new Error("Received entry is not a subvolume");
  if ((await nestedSubvolumes(path)).length > 0) throw new Error("Received subvolume holds nested subvolumes");
  const facts = await subvolumeFacts(path);
  if (!facts.readonly || !facts.receivedUuid) throw new Error("Received subvolume is not a finished receive");
  return path;
}

/** The restoration header of LXD's optimized backups (backup/optimized_header.yaml), as YAML. */
export function headerYaml(subvolumes: SubvolumeInfo[]): string {
  return stringifyYaml({ subvolumes: subvolumes.map((s) => ({ path: s.path, snapshot: s.snapshot, readonly: s.readonly, uuid: s.uuid })) });
}

/**
 * The subvolumes a peer's header (or backup header) lists, checked against what we expect:
 * each of `snapshots` once and the volume ("") once, only root subvolumes ("/"), nothing else.
 * Returns them in the order the streams come: the snapshots as listed, then the volume.
 */
export function checkSubvolumes(list: unknown, snapshots: readonly string[]): SubvolumeInfo[] {
  if (!Array.isArray(list)) throw new Error("Invalid BTRFS migration header: no subvolumes list");
  const out: SubvolumeInfo[] = [];
  for (const raw of list as Record<string, unknown>[]) {
    if (!raw || typeof raw !== "object") throw new Error("Invalid BTRFS migration header entry");
    const s = { path: String(raw.path ?? ""), snapshot: String(raw.snapshot ?? ""), readonly: raw.readonly === true, uuid: String(raw.uuid ?? "") };
    if (s.path !== "/") throw new Error("Subvolumes detected in source but target does not support receiving subvolumes");
    out.push(s);
  }
  const want = [...snapshots, ""];
  const got = out.map((s) => s.snapshot);
  const extra = got.filter((n) => !want.includes(n));
  if (extra.length > 0) throw new Error(`Unexpected subvolume for snapshot "${extra[0]}" in the BTRFS migration header`);
  for (const n of want) if (got.filter((g) => g === n).length !== 1) throw new Error(n ? `Snapshot "${n}" is not listed once in the BTRFS migration header` : "The volume is not listed once in the BTRFS migration header");
  return want.map((n) => out.find((s) => s.snapshot === n)!);
}
