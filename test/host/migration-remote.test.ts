// Migration between servers with the stock client over HTTPS: two nodelxd daemons and real
// LXD 5.0.2, each with its own LXD_DIR and listener on its own 127.0.0.x address, trusting the
// client (and the client each of them). Copies in pull, push and relay mode between ours, and
// pull both ways with real LXD: the copy has the snapshots, its rootfs and snapshot trees hash
// equal to the source's (contents and numeric ownership), and it starts and execs.
import { existsSync, readFileSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { busyboxImage } from "../helpers/image.js";
import { startMigrationPeers, type MigrationPeers } from "../helpers/migration-peers.js";
import { treeHash } from "../helpers/tree-hash.js";

let peers: MigrationPeers;
const tag = Math.random().toString(36).slice(2, 6);
const octet = 100 + Math.floor(Math.random() * 150);
const client = (...args: string[]) => peers.remotes.run(...args);
const ok = (...args: string[]) => peers.remotes.ok(...args);
const local = (dir: string, ...args: string[]) => peers.remotes.local(dir, ...args);


const rootfs = (remote: string, name: string, snap?: string) =>
  join(peers.remotes.dirs[remote], "storage-pools", "default", snap ? "containers-snapshots" : "containers", name, ...(snap ? [snap] : []), "rootfs");
const snapshots = async (remote: string, name: string) => (JSON.parse(await ok("query", `${remote}:/1.0/instances/${name}/snapshots`)) as string[]).map((u) => u.split("/").pop()).sort();

/** A stopped container on `remote` with two snapshots; its trees' hashes. */
async function prepare(remote: string, name: string): Promise<Record<string, string>> {
  await ok("launch", `${remote}:busybox`, `${remote}:${name}`, "-q");
  await ok("exec", `${remote}:${name}`, "--", "sh", "-c", "echo first > /root/f; mkdir -p /srv/o; chown 1234:4321 /srv/o; ln -s /etc/hostname /root/l");
  await ok("snapshot", `${remote}:${name}`, "s0");
  await ok("exec", `${remote}:${name}`, "--", "sh", "-c", "echo second > /root/f; echo g > /root/g");
  await ok("snapshot", `${remote}:${name}`, "s1");
  await ok("exec", `${remote}:${name}`, "--", "sh", "-c", "echo third > /root/f; rm /root/g");
  await ok("stop", "-f", `${remote}:${name}`);
  return { current: treeHash(rootfs(remote, name)), s0: treeHash(rootfs(remote, name, "s0")), s1: treeHash(rootfs(remote, name, "s1")) };
}

async function expectCopy(remote: string, name: string, hashes: Record<string, string>, snaps: string[]): Promise<void> {
  expect(await snapshots(remote, name)).toEqual(snaps);
  expect(treeHash(rootfs(remote, name))).toBe(hashes.current);
  for (const s of snaps) expect(treeHash(rootfs(remote, name, s)), s).toBe(hashes[s]);
  await ok("start", `${remote}:${name}`);
  expect((await ok("exec", `${remote}:${name}`, "--", "cat", "/root/f")).trim()).toBe("third");
  expect((await ok("exec", `${remote}:${name}`, "--", "stat", "-c", "%u:%g", "/srv/o")).trim()).toBe("1234:4321");
  await ok("stop", "-f", `${remote}:${name}`);
  if (snaps.includes("s0")) {
    await ok("restore", `${remote}:${name}`, "s0");
    await ok("start", `${remote}:${name}`);
    expect((await ok("exec", `${remote}:${name}`, "--", "cat", "/root/f")).trim()).toBe("first");
    await ok("stop", "-f", `${remote}:${name}`);
  }
}

beforeAll(async () => {
  const at = (n: number) => `127.0.0.${octet}:${9400 + n}`;
  peers = await startMigrationPeers("/tmp/nodelxd-mig-home-", [`s${tag}`, `d${tag}`, `r${tag}`], [at(0), at(1), at(2)]);
}, 300_000);

afterAll(async () => {
  await peers?.stop();
}, 180_000);

const S = () => `s${tag}`;
const D = () => `d${tag}`;
const R = () => `r${tag}`;

describe("nodelxd to nodelxd", () => {
  it("re-sends a file changed in its last snapshot's second at the same size (rsync's quick check can't see it)", async () => {
    await ok("init", `${S()}:busybox`, `${S()}:c-race`, "-q");
    const file = (snap?: string) => join(rootfs(S(), "c-race", snap), "root", "race");
    writeFileSync(file(), "aaaa");
    await ok("snapshot", `${S()}:c-race`, "s0");
    writeFileSync(file(), "bbbb");
    // The snapshot's copy and the changed file share size and mtime: both written within the
    // snapshot's creation second, as a write racing the snapshot is.
    const created = Date.parse(JSON.parse(await ok("query", `${S()}:/1.0/instances/c-race/snapshots/s0`)).created_at);
    const t = new Date(Math.floor(created / 1000) * 1000 + 500);
    for (const f of [file("s0"), file()]) utimesSync(f, t, t);
    await ok("copy", `${S()}:c-race`, `${D()}:c-race`);
    expect(readFileSync(join(rootfs(D(), "c-race"), "root", "race"), "utf8")).toBe("bbbb");
    expect(readFileSync(join(rootfs(D(), "c-race", "s0"), "root", "race"), "utf8")).toBe("aaaa");
  });

  it("with the source's base image on the target, the new volume starts as that image and rsync sends the differences (LXD's base-image)", async () => {
    await local(peers.dst.dir, "image", "import", busyboxImage(), "--alias", "busybox");
    await ok("init", `${S()}:busybox`, `${S()}:c-base`, "-q");
    const fingerprint = (await ok("config", "get", `${S()}:c-base`, "volatile.base_image")).trim();
    const etc = (remote: string) => join(rootfs(remote, "c-base"), "etc");
    // inittab changed at the same size and mtime: rsync's quick check passes it over, so the
    // target keeping the image's content shows the volume was filled from the image (LXD 5.0.2
    // behaves the same); a removed image file goes (--delete), a new file comes.
    const original = readFileSync(join(etc(S()), "inittab"));
    const changed = Buffer.from(original.toString("latin1").replace(/./, (c) => (c === "#" ? "!" : "#")), "latin1");
    writeFileSync(join(etc(S()), "inittab"), changed);
    utimesSync(join(etc(S()), "inittab"), new Date("2020-01-01T00:00:00Z"), new Date("2020-01-01T00:00:00Z"));
    rmSync(join(etc(S()), "hosts"));
    writeFileSync(join(etc(S()), "new"), "not in the image\n");
    await ok("copy", `${S()}:c-base`, `${D()}:c-base`);
    expect((await ok("config", "get", `${D()}:c-base`, "volatile.base_image")).trim()).toBe(fingerprint);
    expect(readFileSync(join(etc(D()), "inittab"))).toEqual(original);
    expect(existsSync(join(etc(D()), "hosts"))).toBe(false);
    expect(readFileSync(join(etc(D()), "new"), "utf8")).toBe("not in the image\n");
    await ok("delete", `${D()}:c-base`);
    await ok("image", "delete", `${D()}:busybox`);
    // Without the image there, everything is sent.
    await ok("copy", `${S()}:c-base`, `${D()}:c-base`);
    expect(readFileSync(join(etc(D()), "inittab"))).toEqual(changed);
  });

  for (const mode of ["pull", "push", "relay"]) {
    it(`lxc copy --mode ${mode} carries the instance and its snapshots`, async () => {
      const name = `c-${mode}`;
      const hashes = await prepare(S(), name);
      await ok("copy", `${S()}:${name}`, `${D()}:${name}`, "--mode", mode);
      await expectCopy(D(), name, hashes, ["s0", "s1"]);
      // The source is untouched.
      expect(treeHash(rootfs(S(), name))).toBe(hashes.current);
    });
  }

  it("lxc copy --instance-only leaves the snapshots behind", async () => {
    const hashes = await prepare(S(), "c-only");
    await ok("copy", `${S()}:c-only`, `${D()}:c-only`, "--instance-only");
    await expectCopy(D(), "c-only", hashes, []);
  });

  it("lxc move moves a stopped container (copy, then delete the source)", async () => {
    const hashes = await prepare(S(), "c-move");
    const uuid = (await ok("config", "get", `${S()}:c-move`, "volatile.uuid")).trim();
    await ok("move", `${S()}:c-move`, `${D()}:c-move`);
    expect((await client("info", `${S()}:c-move`)).status).not.toBe(0);
    expect((await ok("config", "get", `${D()}:c-move`, "volatile.uuid")).trim()).toBe(uuid);
    await expectCopy(D(), "c-move", hashes, ["s0", "s1"]);
  });

  it("a copy onto an existing name fails and leaves both sides as they were", async () => {
    const hashes = await prepare(S(), "c-dup");
    await ok("init", `${D()}:c-dup`, "--empty");
    const before = JSON.parse(await ok("query", `${D()}:/1.0/instances/c-dup`)).config["volatile.uuid"];
    expect((await client("copy", `${S()}:c-dup`, `${D()}:c-dup`)).status).not.toBe(0);
    expect(JSON.parse(await ok("query", `${D()}:/1.0/instances/c-dup`)).config["volatile.uuid"]).toBe(before);
    expect(treeHash(rootfs(S(), "c-dup"))).toBe(hashes.current);
  });
});

describe("with real LXD 5.0.2", () => {
  it("nodelxd to real LXD (pull)", async () => {
    const hashes = await prepare(S(), "o2r");
    await ok("copy", `${S()}:o2r`, `${R()}:o2r`);
    await expectCopy(R(), "o2r", hashes, ["s0", "s1"]);
  });

  it("nodelxd to real LXD (push and relay)", async () => {
    const hashes = await prepare(S(), "o2rp");
    await ok("copy", `${S()}:o2rp`, `${R()}:o2rp`, "--mode", "push");
    await expectCopy(R(), "o2rp", hashes, ["s0", "s1"]);
    await ok("copy", `${S()}:o2rp`, `${R()}:o2rr`, "--mode", "relay");
    expect(await snapshots(R(), "o2rr")).toEqual(["s0", "s1"]);
  });

  it("real LXD to nodelxd (pull, relay, push)", async () => {
    const hashes = await prepare(R(), "r2o");
    await ok("copy", `${R()}:r2o`, `${S()}:r2o`);
    await expectCopy(S(), "r2o", hashes, ["s0", "s1"]);
    await ok("copy", `${R()}:r2o`, `${S()}:r2or`, "--mode", "relay", "--instance-only");
    expect(await snapshots(S(), "r2or")).toEqual([]);
    await ok("copy", `${R()}:r2o`, `${S()}:r2op`, "--mode", "push");
    expect(await snapshots(S(), "r2op")).toEqual(["s0", "s1"]);
    expect(treeHash(rootfs(S(), "r2op"))).toBe(hashes.current);
  });
});
