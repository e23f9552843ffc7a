// `lxd recover`: LXD's interactive flow (main_recover.go), driving /internal/recover/*.
import type { ParsedArgs } from "./args.js";
import { Asker } from "./ask.js";
import { apiRequest, expectSuccess } from "./client.js";

const q = (s: string) => JSON.stringify(s);
const title = (s: string) => s.replace(/(^|-)([a-z])/g, (_m, sep: string, c: string) => sep + c.toUpperCase());

interface PoolPost {
  name: string;
  driver?: string;
  config?: Record<string, string>;
}

export async function recoverCommand(args: ParsedArgs, socket: string): Promise<number> {
  if (args.positional.length > 0) throw new Error("Invalid arguments");
  const server = expectSuccess(await apiRequest(socket, "GET", "/1.0"));
  const existing = (expectSuccess(await apiRequest(socket, "GET", "/1.0/storage-pools?recursion=1")) ?? []) as { name: string; driver: string; config: Record<string, string> }[];
  const ask = new Asker();

  let out = "This LXD server currently has the following storage pools:\n";
  for (const p of existing) out += ` - ${p.name} (backend=${q(p.driver)}, source=${q(p.config?.source ?? "")})\n`;
  process.stdout.write(out);

  const unknown: PoolPost[] = [];
  if (!server?.environment?.server_clustered) {
    const drivers = ((server?.environment?.storage_supported_drivers ?? []) as { Name: string }[]).map((d) => d.Name);
    while (await ask.bool("Would you like to recover another storage pool? (yes/no) [default=no]: ", "no")) {
      const pool: PoolPost = { name: "", config: {} };
      pool.name = await ask.string("Name of the storage pool: ", "", (v) => {
        if (v === "") return "Required value";
        if (unknown.some((p) => p.name === v)) return `Storage pool ${q(v)} is already on recover list`;
        return undefined;
      });
      pool.driver = await ask.string(`Name of the storage backend (${drivers.join(", ")}): `, "", (v) => (drivers.includes(v) ? undefined : `Invalid value ${q(v)} (not one of [${drivers.join(" ")}])`));
      pool.config!.source = await ask.string("Source of the storage pool (block device, volume group, dataset, path, ... as applicable): ", "", (v) => (v === "" ? "Required value" : undefined));
      for (;;) {
        let key = "";
        let value = "";
        await ask
          .string("Additional storage pool configuration property (KEY=VALUE, empty when done): ", "", (v) => {
            if (v === "") return undefined;
            const i = v.indexOf("=");
            if (i < 0) return "Config option should be in the format KEY=VALUE";
            key = v.slice(0, i);
            value = v.slice(i + 1);
            return undefined;
          })
          .catch(() => "");
        if (key === "") break;
        pool.config![key] = value;
      }
      unknown.push(pool);
    }
  }

  out = "The recovery process will be scanning the following storage pools:\n";
  for (const p of existing) out += ` - EXISTING: ${q(p.name)} (backend=${q(p.driver)}, source=${q(p.config?.source ?? "")})\n`;
  for (const p of unknown) out += ` - NEW: ${q(p.name)} (backend=${q(p.driver ?? "")}, source=${q(p.config?.source ?? "")})\n`;
  process.stdout.write(out);
  if (!(await ask.bool("Would you like to continue with scanning for lost volumes? (yes/no) [default=yes]: ", "yes"))) return 0;

  process.stdout.write("Scanning for unknown volumes...\n");
  const pools: PoolPost[] = [...existing.map((p) => ({ name: p.name })), ...unknown];
  for (;;) {
    const res = await apiRequest(socket, "POST", "/internal/recover/validate", { pools }, 0);
    let result: { UnknownVolumes?: { name: string; type: string; snapshotCount: number; project: string; pool: string }[]; DependencyErrors?: string[] };
    try {
      result = expectSuccess(res);
    } catch (e) {
      throw new Error(`Failed validation request: ${(e as Error).message}`);
    }
    const vols = result?.UnknownVolumes ?? [];
    const deps = result?.DependencyErrors ?? [];
    if (vols.length) {
      out = "The following unknown volumes have been found:\n";
      for (const v of vols) out += ` - ${title(v.type)} ${q(v.name)} on pool ${q(v.pool)} in project ${q(v.project)} (includes ${v.snapshotCount} snapshots)\n`;
      process.stdout.write(out);
    }
    if (deps.length) {
      process.stdout.write("You are currently missing the following:\n" + deps.map((d) => ` - ${d}\n`).join(""));
      await ask.string("Please create those missing entries and then hit ENTER: ", "", () => undefined);
      continue;
    }
    if (!vols.length) {
      process.stdout.write("No unknown volumes found. Nothing to do.\n");
      return 0;
    }
    break;
  }

  if (!(await ask.bool("Would you like those to be recovered? (yes/no) [default=no]: ", "no"))) return 0;
  process.stdout.write("Starting recovery...\n");
  try {
    expectSuccess(await apiRequest(socket, "POST", "/internal/recover/import", { pools }, 0));
  } catch (e) {
    throw new Error(`Failed import request: ${(e as Error).message}`);
  }
  return 0;
}
