// VXLAN bridge tunnels end to end: two network namespaces this test creates, joined by a
// veth pair, each running its own nodelxd (`ip netns exec NS node dist/main.js`, own
// LXD_DIR) with a bridge that has tunnel.t1.protocol=vxlan to the other. Traffic crosses.
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MAIN, rawRequest } from "../helpers/daemon.js";
import { freeSubnet, must, runId, sh } from "../helpers/net.js";

const id = runId();
const nsA = `nt${id}A`;
const nsB = `nt${id}B`;
const daemons: { proc: ChildProcess; dir: string }[] = [];

async function daemonIn(ns: string) {
  const dir = mkdtempSync("/tmp/nodelxd-test-");
  const proc = spawn("ip", ["netns", "exec", ns, process.execPath, MAIN, "--debug"], { env: { ...process.env, LXD_DIR: dir }, stdio: "ignore" });
  daemons.push({ proc, dir });
  const socket = join(dir, "unix.socket");
  const deadline = Date.now() + 30_000;
  for (;;) {
    const ok = await rawRequest(socket, "GET", "/internal/ready").then((r) => r.status === 200, () => false);
    if (ok) break;
    if (Date.now() > deadline) throw new Error(`daemon in ${ns} did not start`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return { api: (method: string, path: string, body?: unknown) => rawRequest(socket, method, path, body) };
}

let underlay: number;
let overlay: number;

beforeAll(() => {
  underlay = freeSubnet();
  overlay = freeSubnet(new Set([underlay]));
  must("ip", ["netns", "add", nsA]);
  must("ip", ["netns", "add", nsB]);
  must("ip", ["-n", nsA, "link", "add", "ul0", "type", "veth", "peer", "name", "ul1", "netns", nsB]);
  must("ip", ["-n", nsA, "addr", "add", `10.97.${underlay}.1/30`, "dev", "ul0"]);
  must("ip", ["-n", nsB, "addr", "add", `10.97.${underlay}.2/30`, "dev", "ul1"]);
  for (const [ns, dev] of [[nsA, "ul0"], [nsB, "ul1"]]) {
    must("ip", ["-n", ns, "link", "set", dev, "up"]);
    must("ip", ["-n", ns, "link", "set", "lo", "up"]);
  }
});

afterAll(async () => {
  for (const d of daemons) {
    if (d.proc.exitCode === null) {
      d.proc.kill("SIGTERM");
      await new Promise((r) => d.proc.once("exit", r));
    }
    rmSync(d.dir, { recursive: true, force: true });
  }
  sh("ip", ["netns", "del", nsA]);
  sh("ip", ["netns", "del", nsB]);
});

describe("vxlan tunnel between two daemons in two namespaces", () => {
  it("passes traffic between the two bridges, and tears the tunnel down on delete", async () => {
    const a = await daemonIn(nsA);
    const b = await daemonIn(nsB);
    const cfg = (self: number, local: number, remote: number) => ({
      "ipv4.address": `10.97.${overlay}.${self}/24`,
      "ipv4.nat": "false",
      "ipv4.dhcp": "false",
      "ipv6.address": "none",
      "tunnel.t1.protocol": "vxlan",
      "tunnel.t1.local": `10.97.${underlay}.${local}`,
      "tunnel.t1.remote": `10.97.${underlay}.${remote}`,
      "tunnel.t1.id": "4242",
      "tunnel.t1.port": "4789",
    });
    let r = await a.api("POST", "/1.0/networks", { name: "vxbr", config: cfg(1, 1, 2) });
    expect([r.status, r.body.error]).toEqual([201, ""]);
    r = await b.api("POST", "/1.0/networks", { name: "vxbr", config: cfg(2, 2, 1) });
    expect([r.status, r.body.error]).toEqual([201, ""]);

    const link = JSON.parse(must("ip", ["-n", nsA, "-j", "-d", "link", "show", "vxbr-t1"]))[0];
    expect(link.linkinfo.info_kind).toBe("vxlan");
    expect(link.linkinfo.info_data).toMatchObject({ id: 4242, port: 4789, local: `10.97.${underlay}.1`, remote: `10.97.${underlay}.2` });
    expect(link.master).toBe("vxbr");
    expect(link.mtu).toBe(1400);

    const ping = sh("ip", ["netns", "exec", nsA, "busybox", "ping", "-c", "3", "-W", "2", `10.97.${overlay}.2`], { timeout: 30_000 });
    expect(ping.stdout).toMatch(/3 (packets )?received/);

    // Changing the tunnel id on one side breaks the path; the update re-creates the link.
    r = await b.api("PATCH", "/1.0/networks/vxbr", { config: { "tunnel.t1.id": "4243" } });
    expect(r.status).toBe(200);
    const id2 = JSON.parse(must("ip", ["-n", nsB, "-j", "-d", "link", "show", "vxbr-t1"]))[0].linkinfo.info_data.id;
    expect(id2).toBe(4243);
    const noPath = sh("ip", ["netns", "exec", nsA, "busybox", "ping", "-c", "1", "-W", "1", `10.97.${overlay}.2`], { timeout: 10_000 });
    expect(noPath.code).not.toBe(0);

    r = await b.api("DELETE", "/1.0/networks/vxbr");
    expect(r.status).toBe(200);
    expect(sh("ip", ["-n", nsB, "link", "show", "vxbr-t1"]).code).not.toBe(0);
    expect(sh("ip", ["-n", nsB, "link", "show", "vxbr"]).code).not.toBe(0);
    r = await a.api("DELETE", "/1.0/networks/vxbr");
    expect(r.status).toBe(200);
  });

  it("reports the kernel's refusal for GRE tunnels clearly", async () => {
    const a = await daemonIn(nsA);
    const r = await a.api("POST", "/1.0/networks", {
      name: "grebr",
      config: { "ipv4.address": "none", "ipv6.address": "none", "tunnel.g.protocol": "gre", "tunnel.g.local": `10.97.${underlay}.1`, "tunnel.g.remote": `10.97.${underlay}.2` },
    });
    const gretap = sh("ip", ["-n", nsA, "link", "add", "probegt", "type", "gretap", "local", "127.0.0.1", "remote", "127.0.0.2"]);
    if (gretap.code === 0) {
      sh("ip", ["-n", nsA, "link", "del", "probegt"]);
      expect(r.status).toBe(201);
    } else {
      expect(r.status).toBe(500);
      expect(r.body.error).toContain('Failed to create tunnel "g" (gre)');
      expect(sh("ip", ["-n", nsA, "link", "show", "grebr"]).code).not.toBe(0);
    }
  });
});
