// Every API object we serve, as a real daemon serves it after the stock client made it, held against
// LXD 5.0.2's REST spec field by field: names, JSON types, nothing missing but Go's omitempty fields,
// nothing extra (test/helpers/spec.ts). Traffic stays on our own bridge (NAT off).
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import WebSocket from "ws";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startInitialisedDaemon, type InitialisedDaemon } from "../helpers/instances.js";
import { dnsmasqPids, freeSubnet, linkExists, nftChainsOf, runId, sh } from "../helpers/net.js";
import { spec, SPEC_PATH, specDiff } from "../helpers/spec.js";

const btrfs = /\bbtrfs\b/.test(readFileSync("/proc/filesystems", "utf8")) && existsSync("/usr/sbin/mkfs.btrfs");
const id = runId();
const net = `ly${id}s`;
let d: InitialisedDaemon;
let base = "";
let inst = "";

function ok(...args: string[]): string {
  const r = d.lxc(...args);
  if (r.code !== 0) throw new Error(`lxc ${args.join(" ")} failed (${r.code}): ${r.stderr}`);
  return r.stdout;
}

async function get(path: string): Promise<any> {
  const r = await d.api("GET", path);
  if (r.status !== 200) throw new Error(`GET ${path}: ${r.status} ${r.text}`);
  return r.body.metadata;
}

beforeAll(async () => {
  if (!spec) return;
  d = await startInitialisedDaemon();
  base = `10.97.${freeSubnet()}`;
  ok("network", "zone", "create", "ly.example.net");
  ok("network", "create", net, `ipv4.address=${base}.1/24`, "ipv4.nat=false", "ipv6.address=none", "dns.zone.forward=ly.example.net");
  inst = d.launch("c", { network: net });
  ok("snapshot", inst, "s0");
  ok("query", "-X", "POST", "--wait", `/1.0/instances/${inst}/backups`, "-d", JSON.stringify({ name: "b0" }));
  ok("storage", "volume", "create", "default", "v0");
  if (btrfs) {
    ok("storage", "create", "lybt", "btrfs", "size=256MiB");
    ok("storage", "volume", "create", "lybt", "bv0", "size=64MiB");
  }
  ok("storage", "volume", "snapshot", "default", "v0", "vs0");
  ok("query", "-X", "POST", "--wait", "/1.0/storage-pools/default/volumes/custom/v0/backups", "-d", JSON.stringify({ name: "vb0" }));
  ok("network", "acl", "create", "acl0");
  ok("network", "acl", "rule", "add", "acl0", "ingress", "action=allow", "protocol=tcp", "destination_port=22");
  ok("network", "forward", "create", net, `${base}.200`, `target_address=${base}.2`);
  ok("network", "forward", "port", "add", net, `${base}.200`, "tcp", "80", `${base}.3`, "8080");
  ok("network", "zone", "record", "create", "ly.example.net", "www");
  ok("network", "zone", "record", "entry", "add", "ly.example.net", "www", "A", `${base}.9`);
  ok("project", "create", `ly${id}p`);
  const dir = mkdtempSync("/tmp/ly-spec-");
  try {
    execFileSync("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:secp384r1", "-nodes", "-keyout", join(dir, "k"), "-out", join(dir, "c"), "-days", "2", "-subj", "/CN=ly-spec"], { stdio: "ignore" });
    ok("config", "trust", "add", join(dir, "c"));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}, 240_000);

afterAll(async () => {
  if (!d) return;
  d.lxc("network", "forward", "delete", net, `${base}.200`);
  d.lxc("delete", "-f", inst);
  d.lxc("network", "delete", net);
  if (btrfs) {
    d.lxc("storage", "volume", "delete", "lybt", "bv0");
    d.lxc("storage", "delete", "lybt");
  }
  await d.teardown();
  for (const kind of nftChainsOf(net)) sh("nft", ["delete", "chain", "inet", "lxd", `${kind}.${net}`]);
  for (const pid of dnsmasqPids(net)) process.kill(pid, "SIGKILL");
  if (linkExists(net)) sh("ip", ["link", "del", net]);
});

describe.skipIf(!spec)(`API objects against ${SPEC_PATH}`, () => {
  const conform = (def: string, value: unknown) => expect(specDiff(def, value), `${def}: ${JSON.stringify(value)}`).toEqual([]);

  it("server, resources, cluster, warnings, certificates", async () => {
    conform("Server", await get("/1.0"));
    conform("Resources", await get("/1.0/resources"));
    conform("Cluster", await get("/1.0/cluster"));
    const warnings = await get("/1.0/warnings?recursion=1");
    expect(warnings.length).toBeGreaterThan(0);
    for (const w of warnings) conform("Warning", w);
    const certs = await get("/1.0/certificates?recursion=1");
    expect(certs.length).toBe(1);
    conform("Certificate", certs[0]);
  });

  it("instances, their state, snapshots and backups", async () => {
    conform("Instance", await get(`/1.0/instances/${inst}`));
    const full = await get("/1.0/instances?recursion=2");
    expect(full.length).toBe(1);
    conform("InstanceFull", full[0]);
    conform("InstanceState", await get(`/1.0/instances/${inst}/state`));
    conform("InstanceSnapshot", await get(`/1.0/instances/${inst}/snapshots/s0`));
    conform("InstanceBackup", await get(`/1.0/instances/${inst}/backups/b0`));
  });

  it("profiles and projects", async () => {
    conform("Profile", await get("/1.0/profiles/default"));
    conform("Project", await get("/1.0/projects/default"));
    conform("Project", await get(`/1.0/projects/ly${id}p`));
    conform("ProjectState", await get("/1.0/projects/default/state"));
  });

  it("networks, their state and leases, ACLs, forwards and zones", async () => {
    conform("Network", await get(`/1.0/networks/${net}`));
    conform("NetworkState", await get(`/1.0/networks/${net}/state`));
    // The busybox init asks for a lease on eth0.
    let leases: any[] = [];
    for (const deadline = Date.now() + 30_000; leases.length === 0 && Date.now() < deadline; await new Promise((r) => setTimeout(r, 250))) leases = await get(`/1.0/networks/${net}/leases`);
    expect(leases.length).toBeGreaterThan(0);
    for (const l of leases) conform("NetworkLease", l);
    conform("NetworkACL", await get("/1.0/network-acls/acl0"));
    conform("NetworkForward", await get(`/1.0/networks/${net}/forwards/${base}.200`));
    conform("NetworkZone", await get("/1.0/network-zones/ly.example.net"));
    conform("NetworkZoneRecord", await get("/1.0/network-zones/ly.example.net/records/www"));
  });

  it("storage pools, their resources, volumes, volume state, snapshots and backups", async () => {
    conform("StoragePool", await get("/1.0/storage-pools/default"));
    conform("ResourcesStoragePool", await get("/1.0/storage-pools/default/resources"));
    conform("StorageVolume", await get("/1.0/storage-pools/default/volumes/custom/v0"));
    conform("StorageVolume", await get(`/1.0/storage-pools/default/volumes/container/${inst}`));
    // dir reports no usage: LXD's driver error through SmartError.
    const dirState = await d.api("GET", "/1.0/storage-pools/default/volumes/custom/v0/state");
    expect([dirState.status, dirState.body.error]).toEqual([500, "Not supported"]);
    conform("StorageVolumeSnapshot", await get("/1.0/storage-pools/default/volumes/custom/v0/snapshots/vs0"));
    conform("StoragePoolVolumeBackup", await get("/1.0/storage-pools/default/volumes/custom/v0/backups/vb0"));
  });

  it.skipIf(!btrfs)("volume state (btrfs; the kernel has no btrfs otherwise)", async () => {
    conform("StorageVolumeState", await get("/1.0/storage-pools/lybt/volumes/custom/bv0/state"));
  });

  it("images and aliases", async () => {
    const images = await get("/1.0/images?recursion=1");
    expect(images.length).toBe(1);
    conform("Image", images[0]);
    conform("Image", await get(`/1.0/images/${images[0].fingerprint}`));
    conform("ImageAliasesEntry", await get("/1.0/images/aliases/busybox"));
  });

  it("operations and events", async () => {
    const ws = new WebSocket(`ws+unix://${d.socket}:/1.0/events`);
    const events: unknown[] = [];
    ws.on("message", (m) => events.push(JSON.parse(m.toString())));
    await new Promise((r, j) => ws.once("open", r).once("error", j));
    const r = await d.api("POST", `/1.0/instances/${inst}/snapshots`, { name: "s1" });
    expect(r.status).toBe(202);
    conform("Operation", r.body.metadata);
    conform("Operation", await get(`/1.0/operations/${r.body.metadata.id}`));
    conform("Operation", await get(`/1.0/operations/${r.body.metadata.id}/wait?timeout=60`));
    const deadline = Date.now() + 10_000;
    while (!events.some((e: any) => e.type === "lifecycle") && Date.now() < deadline) await new Promise((res) => setTimeout(res, 50));
    ws.close();
    const kinds = new Set(events.map((e: any) => e.type));
    expect(kinds).toContain("operation");
    expect(kinds).toContain("lifecycle");
    for (const e of events) conform("Event", e);
  });
});
