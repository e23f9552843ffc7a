// Optimized (btrfs) backups in LXD 5.0.2's layout, for instances and custom volumes alike:
// backup/optimized_header.yaml (the subvolume list), backup/SNAPDIR/NAME.bin for each snapshot
// (a `btrfs send` stream, incremental on the previous one) and backup/MAIN.bin for the volume
// ("container"/"snapshots" for instances, "volume"/"volume-snapshots" for custom volumes). An
// import reads them back through the driver's staged, checked receive.
import { createWriteStream, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { parseYaml } from "../shared/yaml.js";
import { spawnStreaming } from "../os/exec.js";
import { checkSubvolumes, headerYaml } from "./drivers/btrfs-send.js";
import type { StreamSink } from "./drivers/types.js";
import { scanTarball } from "../images/archive.js";
import { TarRefused } from "../images/tar-gate.js";

export interface OptimizedLayout {
  main: "container" | "volume";
  snapDir: "snapshots" | "volume-snapshots";
}

export const INSTANCE_LAYOUT: OptimizedLayout = { main: "container", snapDir: "snapshots" };
export const VOLUME_LAYOUT: OptimizedLayout = { main: "volume", snapDir: "volume-snapshots" };

/** A sink writing the driver's streams into `backupDir` (the staged backup/ directory). */
export function optimizedSink(backupDir: string, layout: OptimizedLayout): StreamSink {
  return {
    header: async (subvolumes) => writeFileSync(join(backupDir, "optimized_header.yaml"), headerYaml(subvolumes), { mode: 0o644 }),
    stream: async (snapshot, data) => {
      const file = snapshot === undefined ? join(backupDir, `${layout.main}.bin`) : join(backupDir, layout.snapDir, `${snapshot}.bin`);
      if (snapshot !== undefined) mkdirSync(join(backupDir, layout.snapDir), { recursive: true, mode: 0o700 });
      await pipeline(data, createWriteStream(file, { mode: 0o600, flags: "wx" }));
    },
  };
}

/**
 * An optimized tarball's subvolumes checked against its index: with optimized_header, the
 * header file (read in a second pass of the gate, which validated every member already) must
 * list each snapshot and the volume exactly once, root subvolumes only.
 */
export async function checkOptimizedHeader(file: string, snapshots: string[], hasHeader: boolean, gate: { backup?: boolean; volumeBackup?: boolean }): Promise<void> {
  if (!hasHeader) return;
  let captured: Buffer | undefined;
  try {
    captured = (await scanTarball(file, { ...gate, capture: "backup/optimized_header.yaml", captureLimit: 1 << 20 })).captured;
  } catch (e) {
    if (e instanceof TarRefused) throw new Error(e.message.replace("Refusing unsafe image tarball", "Refusing unsafe backup tarball"));
    throw e;
  }
  if (!captured) throw new Error("Optimized backup header file not found");
  let doc: { subvolumes?: unknown } | null;
  try {
    doc = parseYaml(captured.toString("utf8")) as { subvolumes?: unknown } | null;
  } catch (e) {
    throw new Error(`Error parsing optimized backup header file: ${(e as Error).message}`);
  }
  checkSubvolumes(doc?.subvolumes, snapshots);
}

/** The streams of an optimized tarball's members, in the order the driver asks (each `tar -xO` of one member). */
export function optimizedStreams(file: string, layout: OptimizedLayout, signal?: AbortSignal): { next: (snapshot: string | undefined) => Readable; done: () => Promise<void> } {
  const procs: ReturnType<typeof spawnStreaming>[] = [];
  return {
    next: (snapshot) => {
      const member = snapshot === undefined ? `backup/${layout.main}.bin` : `backup/${layout.snapDir}/${snapshot}.bin`;
      // Names were validated (snapshot names) and the member list checked by the gate.
      const p = spawnStreaming("tar", ["-x", "-O", "-f", file, "--", member], { stdin: "ignore", signal });
      procs.push(p);
      return p.stdout!;
    },
    done: async () => {
      for (const p of procs) {
        const r = await p.exited;
        if (r.exitCode !== 0) throw new Error(`Failed reading the optimized backup: ${r.stderr.trim() || `tar exited with ${r.exitCode}`}`);
      }
    },
  };
}
