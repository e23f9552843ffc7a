// GET /1.0/metrics with the stock client and curl: LXD's families for running instances only,
// metrics certificates that read metrics and get 403 elsewhere, core.metrics_address (404 for
// anything but /1.0/metrics) and core.metrics_authentication=false.
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startInitialisedDaemon, type InitialisedDaemon } from "../helpers/instances.js";

let d: InitialisedDaemon;
let certDir: string;
beforeAll(async () => {
  d = await startInitialisedDaemon();
  certDir = mkdtempSync("/tmp/nodelxd-metrics-");
});
afterAll(async () => {
  await d?.teardown();
  if (certDir) rmSync(certDir, { recursive: true, force: true });
});

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

const ok = (r: { code: number; stderr: string }) => expect(r.code, r.stderr).toBe(0);

function curl(url: string, cert = true): string {
  const args = ["-k", "-s", "--max-time", "20", ...(cert ? ["--cert", join(certDir, "m.crt"), "--key", join(certDir, "m.key")] : []), url];
  return spawnSync("curl", args, { encoding: "utf8" }).stdout;
}

describe("/1.0/metrics", () => {
  it("serves LXD's families for running instances, to metrics certificates only, and on core.metrics_address", async () => {
    const c1 = d.launch("m1");
    const c2 = d.launch("m2", { init: true });
    const text = d.lxc("query", "/1.0/metrics");
    ok(text);
    const out = text.stdout;
    expect(out).toContain(`name="${c1}"`);
    expect(out).not.toContain(`name="${c2}"`);
    for (const family of ["lxd_cpu_seconds_total", "lxd_memory_MemTotal_bytes", "lxd_memory_RSS_bytes", "lxd_memory_Active_bytes", "lxd_procs_total", "lxd_filesystem_size_bytes", "lxd_network_receive_bytes_total"]) {
      expect(out, family).toContain(`# TYPE ${family} `);
    }
    expect(out).toMatch(new RegExp(`lxd_procs_total\\{name="${c1}",project="default",type="container"\\} [1-9]`));
    expect(out).toMatch(new RegExp(`lxd_memory_MemTotal_bytes\\{name="${c1}",project="default",type="container"\\} [1-9]`));
    expect(out).toMatch(new RegExp(`lxd_memory_RSS_bytes\\{name="${c1}",project="default",type="container"\\} [1-9]`));
    expect(out).toMatch(new RegExp(`lxd_cpu_seconds_total\\{cpu="0",mode="user",name="${c1}",project="default",type="container"\\} `));
    expect(out).toMatch(new RegExp(`lxd_filesystem_size_bytes\\{device="[^"]*",fstype="[^"]+",mountpoint="/",name="${c1}",project="default",type="container"\\} [0-9.e+]+`));
    expect(out).toContain(`lxd_network_receive_bytes_total{device="lo",name="${c1}"`);
    expect(out.endsWith("# EOF\n")).toBe(true);
    // project filter
    expect(d.lxc("query", "/1.0/metrics?project=default").stdout).toContain(`name="${c1}"`);

    const port = await freePort();
    ok(d.lxc("config", "set", "core.https_address", `127.0.0.1:${port}`));
    spawnSync("openssl", ["req", "-x509", "-newkey", "rsa:2048", "-keyout", join(certDir, "m.key"), "-nodes", "-out", join(certDir, "m.crt"), "-subj", "/CN=lxd.local"], { stdio: "ignore" });
    expect(curl(`https://127.0.0.1:${port}/1.0/metrics`)).toContain(`"error_code":403`);
    ok(d.lxc("config", "trust", "add", join(certDir, "m.crt"), "--type=metrics"));
    const viaCert = curl(`https://127.0.0.1:${port}/1.0/metrics`);
    expect(viaCert).toContain(`name="${c1}"`);
    expect(viaCert).not.toContain(`name="${c2}"`);
    for (const path of ["/1.0/instances", "/1.0/certificates", "/1.0/storage-pools", `/1.0/instances/${c1}/state`]) {
      expect(curl(`https://127.0.0.1:${port}${path}`), path).toContain(`"error_code":403`);
    }

    // A metrics certificate restricted to p1 (as LXD's allowProjectPermission): its own project
    // only; without ?project= ("default") and for another project, 403. An unknown project is empty.
    expect(d.lxc("query", "/1.0/metrics?project=nosuch").stdout).not.toContain("name=");
    ok(d.lxc("project", "create", "p1"));
    spawnSync("openssl", ["req", "-x509", "-newkey", "rsa:2048", "-keyout", join(certDir, "r.key"), "-nodes", "-out", join(certDir, "r.crt"), "-subj", "/CN=restricted.local"], { stdio: "ignore" });
    ok(d.lxc("config", "trust", "add", join(certDir, "r.crt"), "--type=metrics", "--restricted", "--projects", "p1"));
    const restricted = (path: string) => spawnSync("curl", ["-k", "-s", "--max-time", "20", "--cert", join(certDir, "r.crt"), "--key", join(certDir, "r.key"), `https://127.0.0.1:${port}${path}`], { encoding: "utf8" }).stdout;
    expect(restricted("/1.0/metrics")).toContain(`"error_code":403`);
    expect(restricted("/1.0/metrics?project=default")).toContain(`"error_code":403`);
    const own = restricted("/1.0/metrics?project=p1");
    expect(own).toContain("# EOF");
    expect(own).not.toContain(`name="${c1}"`);
    expect(restricted("/1.0/instances?project=p1")).toContain(`"error_code":403`);

    const mport = await freePort();
    ok(d.lxc("config", "set", "core.metrics_address", `127.0.0.1:${mport}`));
    expect(curl(`https://127.0.0.1:${mport}/1.0/metrics`)).toContain(`name="${c1}"`);
    expect(curl(`https://127.0.0.1:${mport}/1.0/instances`)).toContain(`"error_code":404`);
    expect(curl(`https://127.0.0.1:${mport}/1.0/metrics`, false)).toContain(`"error_code":403`);
    ok(d.lxc("config", "set", "core.metrics_authentication=false"));
    expect(curl(`https://127.0.0.1:${mport}/1.0/metrics`, false)).toContain(`name="${c1}"`);
    ok(d.lxc("config", "set", "core.metrics_address", ""));
    expect(spawnSync("curl", ["-k", "-s", "--max-time", "5", `https://127.0.0.1:${mport}/1.0/metrics`]).status).not.toBe(0);
  });
});
