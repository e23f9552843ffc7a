// `lxd init` without flags: LXD's questions (main_init_interactive.go), in LXD's order and words,
// building the preseed that is then applied like `--preseed`. Clustering and MAAS are refused
// (nodelxd has neither); storage, the bridge or an existing interface, the network listener and
// image refresh are asked as LXD asks them.
import { existsSync, statfsSync, statSync } from "node:fs";
import { isIP } from "node:net";
import { stringifyYaml } from "../shared/yaml.js";
import { Asker } from "./ask.js";
import type { InitApi, Preseed, StoragePoolPreseed } from "./preseed.js";

const isCidr = (v: string, family: 4 | 6) => {
  const [addr, len, extra] = v.split("/");
  if (extra !== undefined || len === undefined || !/^\d+$/.test(len)) return false;
  return isIP(addr) === family && Number(len) <= (family === 4 ? 32 : 128);
};
const exists = async (api: InitApi, path: string) => (await api.call("GET", path)).status === 200;

export async function interactivePreseed(api: InitApi, lxdDir: string, ask = new Asker()): Promise<{ preseed: Preseed; print: boolean }> {
  const server = await api.ok("GET", "/1.0");
  const profile = { name: "default", config: {} as Record<string, string>, devices: {} as Record<string, Record<string, string>> };
  const p: Preseed = { config: {}, networks: [], storage_pools: [], profiles: [profile] };

  if (await ask.bool("Would you like to use LXD clustering? (yes/no) [default=no]: ", "no")) throw new Error("Clustering is not supported by nodelxd");

  // Storage
  if (await ask.bool("Do you want to configure a new storage pool? (yes/no) [default=yes]: ", "yes")) {
    // A standalone server is offered local drivers only, as upstream (ceph and cephfs are remote).
    const backends: string[] = (server.environment?.storage_supported_drivers ?? []).filter((d: { Remote?: boolean }) => !d.Remote).map((d: { Name: string }) => d.Name).filter((n: string) => n !== "cephobject");
    if (backends.length === 0) throw new Error("No storage backends available");
    const defaultBackend = backends.includes("zfs") ? "zfs" : backends.includes("btrfs") ? "btrfs" : "dir";
    for (;;) {
      const pool: StoragePoolPreseed = { name: "", driver: "", config: {} };
      pool.name = await ask.string("Name of the new storage pool [default=default]: ", "default");
      if (await exists(api, `/1.0/storage-pools/${encodeURIComponent(pool.name)}`)) {
        process.stdout.write(`The requested storage pool "${pool.name}" already exists. Please choose another name.\n`);
        continue;
      }
      profile.devices.root ??= { type: "disk", path: "/", pool: pool.name };
      pool.driver =
        backends.length > 1
          ? await ask.choice(`Name of the storage backend to use (${backends.join(", ")}) [default=${defaultBackend}]: `, backends, defaultBackend)
          : backends[0];
      if (pool.driver !== "dir") {
        if (await ask.bool(`Create a new ${pool.driver.toUpperCase()} pool? (yes/no) [default=yes]: `, "yes")) {
          if (await ask.bool("Would you like to use an existing empty block device (e.g. a disk or partition)? (yes/no) [default=no]: ", "no")) {
            pool.config!.source = await ask.string("Path to the existing block device: ", "", (v) => {
              try {
                if (statSync(v).isBlockDevice()) return undefined;
              } catch {
                /* not there */
              }
              return `${JSON.stringify(v)} is not a block device`;
            });
          } else {
            const st = statfsSync(existsSync(lxdDir) ? lxdDir : "/");
            const size = Math.min(30, Math.max(5, Math.floor((st.bsize * st.blocks) / 1024 ** 3 / 5)));
            let answer = await ask.string(`Size in GiB of the new loop device (1GiB minimum) [default=${size}GiB]: `, `${size}GiB`, (v) => {
              const n = v.split("GiB")[0];
              if (!/^-?\d+$/.test(n)) return `strconv.ParseInt: parsing ${JSON.stringify(n)}: invalid syntax`;
              return Number(n) < 1 ? "Minimum size is 1GiB" : undefined;
            });
            if (!answer.endsWith("GiB")) answer += "GiB";
            pool.config!.size = answer;
          }
        } else {
          pool.config!.source = await ask.string(`Name of the existing ${pool.driver.toUpperCase()} pool or dataset: `, "");
        }
      }
      p.storage_pools!.push(pool);
      break;
    }
  }

  if (await ask.bool("Would you like to connect to a MAAS server? (yes/no) [default=no]: ", "no")) throw new Error("MAAS is not supported by nodelxd");

  // Networking
  if (!(await ask.bool("Would you like to create a new local network bridge? (yes/no) [default=yes]: ", "yes"))) {
    if (await ask.bool("Would you like to configure LXD to use an existing bridge or host interface? (yes/no) [default=no]: ", "no")) {
      for (;;) {
        const name = await ask.string("Name of the existing bridge or host interface: ", "");
        if (name.includes("/") || name.startsWith(".") || !existsSync(`/sys/class/net/${name}`)) {
          process.stdout.write("The requested interface doesn't exist. Please choose another one.\n");
          continue;
        }
        profile.devices.eth0 = { type: "nic", nictype: existsSync(`/sys/class/net/${name}/bridge`) ? "bridged" : "macvlan", name: "eth0", parent: name };
        break;
      }
    }
  } else {
    for (;;) {
      const name = await ask.string("What should the new bridge be called? [default=lxdbr0]: ", "lxdbr0", (v) =>
        v === "" || v.length > 15 || /[\s/:]/.test(v) || v === "." || v === ".." ? "Network interface is too long or contains invalid characters" : undefined,
      );
      if (await exists(api, `/1.0/networks/${encodeURIComponent(name)}`)) {
        process.stdout.write(`The requested network bridge "${name}" already exists. Please choose another name.\n`);
        continue;
      }
      profile.devices.eth0 = { type: "nic", name: "eth0", network: name };
      const config: Record<string, string> = {};
      for (const family of [4, 6] as const) {
        const key = `ipv${family}`;
        config[`${key}.address`] = await ask.string(`What IPv${family} address should be used? (CIDR subnet notation, “auto” or “none”) [default=auto]: `, "auto", (v) =>
          v === "auto" || v === "none" || v === "" || isCidr(v, family) ? undefined : `Not an IPv${family} network address in CIDR notation ${JSON.stringify(v)}`,
        );
        if (!["auto", "none"].includes(config[`${key}.address`])) {
          config[`${key}.nat`] = String(await ask.bool(`Would you like LXD to NAT IPv${family} traffic on your bridge? [default=yes]: `, "yes"));
        }
      }
      p.networks!.push({ name, project: "default", config });
      break;
    }
  }

  // Daemon
  if (await ask.bool("Would you like the LXD server to be available over the network? (yes/no) [default=no]: ", "no")) {
    const addr = await ask.string("Address to bind LXD to (not including port) [default=all]: ", "all", (v) => (v === "all" || isIP(v.replace(/^\[|\]$/g, "")) ? undefined : `${JSON.stringify(v)} is not an IP address`));
    const port = await ask.int("Port to bind LXD to [default=8443]: ", 1, 65535, "8443");
    const host = addr === "all" ? "::" : addr.replace(/^\[|\]$/g, "");
    p.config!["core.https_address"] = isIP(host) === 6 ? `[${host}]:${port}` : `${host}:${port}`;
    const password = await ask.string("Trust password for new clients: ", "", () => undefined);
    if (password !== "") p.config!["core.trust_password"] = password;
    else process.stdout.write("No password set, client certificates will have to be manually trusted.");
  }
  if (!(await ask.bool("Would you like stale cached images to be updated automatically? (yes/no) [default=yes]: ", "yes"))) p.config!["images.auto_update_interval"] = "0";

  const print = await ask.bool('Would you like a YAML "lxd init" preseed to be printed? (yes/no) [default=no]: ', "no");
  return { preseed: p, print };
}

/** The preseed as LXD prints it (every section present, empty ones as `[]`/`null`). */
export function renderPreseed(p: Preseed): string {
  const doc = { config: p.config ?? {}, networks: p.networks ?? [], storage_pools: p.storage_pools ?? [], profiles: p.profiles ?? [], projects: [], cluster: null };
  return stringifyYaml(doc, { version: "1.1", indentSeq: false });
}
