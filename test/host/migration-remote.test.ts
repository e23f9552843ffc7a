// Migration between servers with the stock client over HTTPS: two nodelxd daemons and real
// LXD 5.0.2, each with its own LXD_DIR and listener on its own 127.0.0.x address, trusting the
// client (and the client each of them). Copies in pull, push and relay mode between ours, and
// pull both ways with real LXD: the copy has the snapshots, its rootfs and snapshot trees hash
// equal to the source's (contents and numeric ownership), and it starts and execs.
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startDaemon, type TestDaemon } from "../helpers/daemon.js";
import { startInitialisedDaemon, type InitialisedDaemon } from "../helpers/instances.js";
import { busyboxImage } from "../helpers/image.js";
import { startReferenceLxd, type ReferenceLxd } from "../helpers/reference.js";
import { treeHash } from "../helpers/tree-hash.js";

let src: InitialisedDaemon;
let dst: TestDaemon;
let ref: ReferenceLxd;
let home: string;
const tag = Math.random().toString(36).slice(2, 6);
const octet = 100 + Math.floor(Math.random() * 150);
const dirs: Record<string, string> = {};

function client(...args: string[]) {
  return spawnSync("lxc", args, { env: { ...process.env, HOME: home }, encoding: "utf8", timeout: 120_000 });
}
function ok(...args: string[]): string {
  const r = client(...args);
  if (r.status !== 0) throw new Error(`lxc ${args.join(" ")} failed: ${r.stderr}`);
  return r.stdout;
}
function local(dir: string, ...args: string[]): string {
  const r = spawnSync("lxc", args, { env: { ...process.env, LXD_DIR: dir, HOME: home }, encoding: "utf8" });
  if (r.status !== 0) throw new Error(`lxc ${args.join(" ")} (LXD_DIR=${dir}) failed: ${r.stderr}`);
  return r.stdout;
}

function listen(remote: string, dir: string, n: number): void {
  dirs[remote] = dir;
  local(dir, "config", "set", "core.https_address", `127.0.0.${octet}:${9400 + n}`);
  local(dir, "config", "set", "core.trust_password", "mig-test");
  ok("remote", "add", remote, `https://127.0.0.${octet}:${9400 + n}`, "--accept-certificate", "--password", "mig-test");
}

const rootfs = (remote: string, name: string, snap?: string) =>
  join(dirs[remote], "storage-pools", "default", snap ? "containers-snapshots" : "containers", name, ...(snap ? [snap] : []), "rootfs");
const snapshots = (remote: string, name: string) => (JSON.parse(ok("query", `${remote}:/1.0/instances/${name}/snapshots`)) as string[]).map((u) => u.split("/").pop()).sort();

/** A stopped container on `remote` with two snapshots; its trees' hashes. */
function prepare(remote: string, name: string): Record<string, string> {
  ok("launch", `${remote}:busybox`, `${remote}:${name}`, "-q");
  ok("exec", `${remote}:${name}`, "--", "sh", "-c", "echo first > /root/f; mkdir -p /srv/o; chown 1234:4321 /srv/o; ln -s /etc/hostname /root/l");
  ok("snapshot", `${remote}:${name}`, "s0");
  ok("exec", `${remote}:${name}`, "--", "sh", "-c", "echo second > /root/f; echo g > /root/g");
  ok("snapshot", `${remote}:${name}`, "s1");
  ok("exec", `${remote}:${name}`, "--", "sh", "-c", "echo third > /root/f; rm /root/g");
  ok("stop", "-f", `${remote}:${name}`);
  return { current: treeHash(rootfs(remote, name)), s0: treeHash(rootfs(remote, name, "s0")), s1: treeHash(rootfs(remote, name, "s1")) };
}

function expectCopy(remote: string, name: string, hashes: Record<string, string>, snaps: string[]): void {
  expect(snapshots(remote, name)).toEqual(snaps);
  expect(treeHash(rootfs(remote, name))).toBe(hashes.current);
  for (const s of snaps) expect(treeHash(rootfs(remote, name, s)), s).toBe(hashes[s]);
  ok("start", `${remote}:${name}`);
  expect(ok("exec", `${remote}:${name}`, "--", "cat", "/root/f").trim()).toBe("third");
  expect(ok("exec", `${remote}:${name}`, "--", "stat", "-c", "%u:%g", "/srv/o").trim()).toBe("1234:4321");
  ok("stop", "-f", `${remote}:${name}`);
  if (snaps.includes("s0")) {
    ok("restore", `${remote}:${name}`, "s0");
    ok("start", `${remote}:${name}`);
    expect(ok("exec", `${remote}:${name}`, "--", "cat", "/root/f").trim()).toBe("first");
    ok("stop", "-f", `${remote}:${name}`);
  }
}

beforeAll(async () => {
  home = mkdtempSync("/tmp/nodelxd-mig-home-");
  src = await startInitialisedDaemon();
  dst = await startDaemon();
  ref = await startReferenceLxd();
  for (const dir of [dst.dir, dirname(ref.socket)]) {
    local(dir, "storage", "create", "default", "dir");
    local(dir, "profile", "device", "add", "default", "root", "disk", "path=/", "pool=default");
  }
  listen(`s${tag}`, src.dir, 0);
  listen(`d${tag}`, dst.dir, 1);
  listen(`r${tag}`, dirname(ref.socket), 2);
  // Real LXD needs the image to launch its own source container.
  local(dirname(ref.socket), "image", "import", busyboxImage(), "--alias", "busybox");
}, 300_000);

afterAll(async () => {
  for (const [remote, dir] of Object.entries(dirs)) {
    const names = spawnSync("lxc", ["list", "--format", "csv", "-c", "n"], { env: { ...process.env, LXD_DIR: dir, HOME: home }, encoding: "utf8" }).stdout.split("\n").filter(Boolean);
    for (const n of names) spawnSync("lxc", ["delete", "-f", n], { env: { ...process.env, LXD_DIR: dir, HOME: home } });
    void remote;
  }
  await src?.teardown().catch(() => {});
  await dst?.stop().catch(() => {});
  await ref?.stop().catch(() => {});
  if (home) rmSync(home, { recursive: true, force: true });
}, 180_000);

const S = () => `s${tag}`;
const D = () => `d${tag}`;
const R = () => `r${tag}`;

describe("nodelxd to nodelxd", () => {
  for (const mode of ["pull", "push", "relay"]) {
    it(`lxc copy --mode ${mode} carries the instance and its snapshots`, () => {
      const name = `c-${mode}`;
      const hashes = prepare(S(), name);
      ok("copy", `${S()}:${name}`, `${D()}:${name}`, "--mode", mode);
      expectCopy(D(), name, hashes, ["s0", "s1"]);
      // The source is untouched.
      expect(treeHash(rootfs(S(), name))).toBe(hashes.current);
    });
  }

  it("lxc copy --instance-only leaves the snapshots behind", () => {
    const hashes = prepare(S(), "c-only");
    ok("copy", `${S()}:c-only`, `${D()}:c-only`, "--instance-only");
    expectCopy(D(), "c-only", hashes, []);
  });

  it("lxc move moves a stopped container (copy, then delete the source)", () => {
    const hashes = prepare(S(), "c-move");
    const uuid = ok("config", "get", `${S()}:c-move`, "volatile.uuid").trim();
    ok("move", `${S()}:c-move`, `${D()}:c-move`);
    expect(client("info", `${S()}:c-move`).status).not.toBe(0);
    expect(ok("config", "get", `${D()}:c-move`, "volatile.uuid").trim()).toBe(uuid);
    expectCopy(D(), "c-move", hashes, ["s0", "s1"]);
  });

  it("a copy onto an existing name fails and leaves both sides as they were", () => {
    const hashes = prepare(S(), "c-dup");
    ok("init", `${D()}:c-dup`, "--empty");
    const before = JSON.parse(ok("query", `${D()}:/1.0/instances/c-dup`)).config["volatile.uuid"];
    expect(client("copy", `${S()}:c-dup`, `${D()}:c-dup`).status).not.toBe(0);
    expect(JSON.parse(ok("query", `${D()}:/1.0/instances/c-dup`)).config["volatile.uuid"]).toBe(before);
    expect(treeHash(rootfs(S(), "c-dup"))).toBe(hashes.current);
  });
});

describe("with real LXD 5.0.2", () => {
  it("nodelxd to real LXD (pull)", () => {
    const hashes = prepare(S(), "o2r");
    ok("copy", `${S()}:o2r`, `${R()}:o2r`);
    expectCopy(R(), "o2r", hashes, ["s0", "s1"]);
  });

  it("nodelxd to real LXD (push and relay)", () => {
    const hashes = prepare(S(), "o2rp");
    ok("copy", `${S()}:o2rp`, `${R()}:o2rp`, "--mode", "push");
    expectCopy(R(), "o2rp", hashes, ["s0", "s1"]);
    ok("copy", `${S()}:o2rp`, `${R()}:o2rr`, "--mode", "relay");
    expect(snapshots(R(), "o2rr")).toEqual(["s0", "s1"]);
  });

  it("real LXD to nodelxd (pull, relay, push)", () => {
    const hashes = prepare(R(), "r2o");
    ok("copy", `${R()}:r2o`, `${S()}:r2o`);
    expectCopy(S(), "r2o", hashes, ["s0", "s1"]);
    ok("copy", `${R()}:r2o`, `${S()}:r2or`, "--mode", "relay", "--instance-only");
    expect(snapshots(S(), "r2or")).toEqual([]);
    ok("copy", `${R()}:r2o`, `${S()}:r2op`, "--mode", "push");
    expect(snapshots(S(), "r2op")).toEqual(["s0", "s1"]);
    expect(treeHash(rootfs(S(), "r2op"))).toBe(hashes.current);
  });
});
