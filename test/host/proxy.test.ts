// proxy devices with the stock client and real busybox containers: busybox httpd published on
// the host, unix-to-tcp, udp, bind=instance, the relay surviving a daemon kill -9 and being
// restarted when it dies, nat=true chains, and bad input refused with nothing created.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, readFileSync, rmSync } from "node:fs";
import { request } from "node:http";
import { createServer } from "node:net";
import { createSocket } from "node:dgram";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startInitialisedDaemon, type InitialisedDaemon } from "../helpers/instances.js";

let d: InitialisedDaemon;
const helpers: ChildProcess[] = [];
beforeAll(async () => {
  d = await startInitialisedDaemon();
  // As LXD's suite: a p2p eth0 in the default profile (liblxc brings lo up with a configured NIC).
  const r = d.lxc("profile", "device", "add", "default", "eth0", "nic", "nictype=p2p", "name=eth0");
  if (r.code !== 0) throw new Error(r.stderr);
});
afterAll(async () => {
  for (const h of helpers) h.kill("SIGKILL");
  await d?.teardown();
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

function httpGet(opts: { port?: number; socketPath?: string }): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port: opts.port, socketPath: opts.socketPath, path: "/index.html", timeout: 5000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c) => chunks.push(c));
      res.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
      res.on("error", reject);
    });
    req.on("error", reject);
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.end();
  });
}

function udpRoundTrip(port: number, message: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = createSocket("udp4");
    const timer = setTimeout(() => {
      s.close();
      reject(new Error("no udp answer"));
    }, 5000);
    s.on("message", (m) => {
      clearTimeout(timer);
      s.close();
      resolve(m.toString());
    });
    s.send(message, port, "127.0.0.1");
  });
}

const ok = (r: { code: number; stderr: string }) => expect(r.code, r.stderr).toBe(0);

function initPid(name: string): number {
  const r = d.lxc("query", `/1.0/instances/${name}/state`);
  return JSON.parse(r.stdout).pid;
}

function relayPid(name: string, dev: string): number {
  const f = join(d.dir, "devices", name, `proxy.${dev}`);
  return existsSync(f) ? Number(readFileSync(f, "utf8").split(" ")[0]) : 0;
}

const isAlive = (pid: number) => pid > 0 && existsSync(`/proc/${pid}`) && !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, "utf8"));

async function until<T>(f: () => Promise<T> | T, ms = 8000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      const v = await f();
      if (v) return v;
    } catch (e) {
      if (Date.now() > deadline) throw e;
    }
    if (Date.now() > deadline) throw new Error("timed out");
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** busybox httpd serving "hello from NAME" on port 80 inside the container. */
function serveHttp(name: string): void {
  ok(d.lxc("exec", name, "--", "sh", "-c", `mkdir -p /www && echo "hello from ${name}" > /www/index.html && httpd -p 127.0.0.1:80 -h /www`));
}

describe("proxy devices", () => {
  it("publishes busybox httpd from the container on the host (tcp), follows connect changes, restarts with the container", async () => {
    const c = d.launch("web");
    serveHttp(c);
    const port = await freePort();
    ok(d.lxc("config", "device", "add", c, "web", "proxy", `listen=tcp:127.0.0.1:${port}`, "connect=tcp:127.0.0.1:80"));
    expect(await httpGet({ port })).toBe(`hello from ${c}\n`);
    const log = readFileSync(join(d.dir, "logs", c, "proxy.web.log"), "utf8");
    expect(log).toContain("Status: Started");
    // a changed connect address re-creates the relay
    ok(d.lxc("exec", c, "--", "httpd", "-p", "127.0.0.1:8080", "-h", "/www"));
    const before = relayPid(c, "web");
    ok(d.lxc("config", "device", "set", c, "web", "connect", "tcp:127.0.0.1:8080"));
    expect(relayPid(c, "web")).not.toBe(before);
    expect(isAlive(before)).toBe(false);
    expect(await httpGet({ port })).toBe(`hello from ${c}\n`);
    // stop: the relay ends; start: it comes back
    ok(d.lxc("stop", "-f", c));
    expect(isAlive(before)).toBe(false);
    expect(relayPid(c, "web")).toBe(0);
    await expect(httpGet({ port })).rejects.toThrow();
    ok(d.lxc("start", c));
    serveHttp(c);
    ok(d.lxc("exec", c, "--", "httpd", "-p", "127.0.0.1:8080", "-h", "/www"));
    expect(await httpGet({ port })).toBe(`hello from ${c}\n`);
    // removal: nothing listens any more
    const pid = relayPid(c, "web");
    ok(d.lxc("config", "device", "remove", c, "web"));
    expect(isAlive(pid)).toBe(false);
    await expect(httpGet({ port })).rejects.toThrow();
  });

  it("unix socket on the host to tcp in the container, with uid/gid/mode on the socket", async () => {
    const c = d.launch("unix");
    serveHttp(c);
    const sock = join(d.dir, `proxy-${c}.sock`);
    ok(d.lxc("config", "device", "add", c, "u", "proxy", `listen=unix:${sock}`, "connect=tcp:127.0.0.1:80", "uid=1234", "gid=1235", "mode=0660"));
    expect(await httpGet({ socketPath: sock })).toBe(`hello from ${c}\n`);
    const st = spawnSync("stat", ["-c", "%u %g %a %F", sock], { encoding: "utf8" }).stdout.trim();
    expect(st).toBe("1234 1235 660 socket");
    ok(d.lxc("config", "device", "remove", c, "u"));
    expect(existsSync(sock)).toBe(false);
  });

  it("udp from the host to a udp echo server in the container's network namespace", async () => {
    const c = d.launch("udp");
    const pid = initPid(c);
    const echo = spawn("nsenter", ["-n", "-t", String(pid), "--", process.execPath, "-e", `const s=require("dgram").createSocket("udp4");s.on("message",(m,r)=>s.send(m,r.port,r.address));s.bind(4321,"127.0.0.1")`], { stdio: "ignore" });
    helpers.push(echo);
    const port = await freePort();
    ok(d.lxc("config", "device", "add", c, "u", "proxy", `listen=udp:127.0.0.1:${port}`, "connect=udp:127.0.0.1:4321"));
    expect(await until(() => udpRoundTrip(port, "ping-udp"))).toBe("ping-udp");
    echo.kill("SIGKILL");
  });

  it("bind=instance: a listener inside the container reaching a server on the host", async () => {
    const c = d.launch("inst");
    const hostPort = await freePort();
    const server = spawn(process.execPath, ["-e", `require("http").createServer((q,s)=>s.end("from the host\\n")).listen(${hostPort},"127.0.0.1")`], { stdio: "ignore" });
    helpers.push(server);
    ok(d.lxc("config", "device", "add", c, "h", "proxy", "bind=instance", "listen=tcp:127.0.0.1:8000", `connect=tcp:127.0.0.1:${hostPort}`));
    const r = await until(() => {
      const w = d.lxc("exec", c, "--", "wget", "-qO-", "http://127.0.0.1:8000/");
      return w.code === 0 ? w.stdout : "";
    });
    expect(r).toBe("from the host\n");
    server.kill("SIGKILL");
  });

  it("proxy_protocol=true sends a PROXY v1 header to the tcp target", async () => {
    const c = d.launch("pp");
    const hostPort = await freePort();
    const server = spawn(process.execPath, ["-e", `require("net").createServer((s)=>s.once("data",(b)=>s.end("HTTP/1.0 200 OK\\r\\n\\r\\n"+b.toString().split("\\r\\n")[0]+"\\n"))).listen(${hostPort},"127.0.0.1")`], { stdio: "ignore" });
    helpers.push(server);
    ok(d.lxc("config", "device", "add", c, "pp", "proxy", "bind=instance", "listen=tcp:127.0.0.1:8001", `connect=tcp:127.0.0.1:${hostPort}`, "proxy_protocol=true"));
    const line = await until(() => {
      const w = d.lxc("exec", c, "--", "wget", "-qO-", "http://127.0.0.1:8001/");
      return w.code === 0 ? w.stdout : "";
    });
    expect(line).toMatch(new RegExp(`^PROXY TCP4 127\\.0\\.0\\.1 127\\.0\\.0\\.1 \\d+ 8001\n$`));
    server.kill("SIGKILL");
  });

  it("the relay survives a daemon kill -9, is adopted after restart, and is restarted if it dies", async () => {
    const c = d.launch("survive");
    serveHttp(c);
    const port = await freePort();
    ok(d.lxc("config", "device", "add", c, "web", "proxy", `listen=tcp:127.0.0.1:${port}`, "connect=tcp:127.0.0.1:80"));
    const pid = relayPid(c, "web");
    await d.kill9();
    expect(isAlive(pid)).toBe(true);
    expect(await httpGet({ port })).toBe(`hello from ${c}\n`);
    await d.restart();
    expect(relayPid(c, "web")).toBe(pid); // adopted, not restarted
    process.kill(pid, "SIGKILL");
    const next = await until(() => {
      const p = relayPid(c, "web");
      return p !== pid && isAlive(p) ? p : 0;
    });
    expect(next).not.toBe(pid);
    expect(await until(() => httpGet({ port }))).toBe(`hello from ${c}\n`);
    ok(d.lxc("delete", "-f", c));
    expect(isAlive(next)).toBe(false);
  });

  it("refuses bad input with LXD's messages and creates nothing", async () => {
    const c = d.launch("bad");
    const port = await freePort();
    const cases: [string[], string][] = [
      [[`listen=tcp:127.0.0.1:${port}`, "connect=tcp:localhost:4321"], `Invalid value for device option "connect": Not an IP address "localhost"`],
      [[`listen=tcp:0.0.0.0:${port}`, "connect=tcp:0.0.0.0:4321", "nat=true"], `Cannot listen on wildcard address "0.0.0.0" when in nat mode`],
      [[`listen=tcp:[::]:${port}`, "connect=tcp:0.0.0.0:4321", "nat=true"], `Cannot listen on wildcard address "::" when in nat mode`],
      [[`listen=tcp:127.0.0.1:${port}`, "connect=tcp:[::]:4321", "nat=true"], "Cannot mix IP versions between listen and connect in nat mode"],
      [[`listen=tcp:[::1]:${port}`, "connect=tcp:[::]:4321", "nat=true", "proxy_protocol=true"], "The PROXY header can only be sent to tcp servers in non-nat mode"],
      [[`listen=tcp:127.0.0.1:${port}`, "connect=tcp:127.0.0.1:80", "uid=5"], "Only proxy devices for non-abstract unix sockets can carry uid, gid, or mode properties"],
      [[`listen=tcp:127.0.0.1:${port}`, "connect=tcp:127.0.0.1:80-82"], "Mismatch between listen port(s) and connect port(s) count"],
      [[`listen=sctp:127.0.0.1:${port}`, "connect=tcp:127.0.0.1:80"], `Invalid value for device option "listen": Unknown protocol type "sctp"`],
      [[`listen=tcp:127.0.0.1:${port}`, "connect=tcp:127.0.0.1:80", "bind=sideways"], `Invalid binding side given. Must be "host" or "instance"`],
      [[`listen=tcp:127.0.0.1:${port}`, "connect=tcp:127.0.0.1:80", "bogus=1"], `Invalid device option "bogus"`],
      [[`listen=udp:127.0.0.1:${port}`, "connect=tcp:127.0.0.1:80", "nat=true"], "Proxying udp <-> tcp is not supported when using NAT"],
    ];
    for (const [args, msg] of cases) {
      const r = d.lxc("config", "device", "add", c, "p", "proxy", ...args);
      expect(r.code, args.join(" ")).not.toBe(0);
      expect(r.stderr).toContain(msg);
    }
    // A path that is not a socket is never replaced: the start fails, the file stays.
    const file = join(d.dir, `not-a-socket-${c}`);
    spawnSync("sh", ["-c", `echo keep > ${file}`]);
    const r = d.lxc("config", "device", "add", c, "p", "proxy", `listen=unix:${file}`, "connect=tcp:127.0.0.1:80");
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain(`Failed to start device "p": Error occurred when starting proxy device: Error: Failed to listen on ${file}: the path exists and is not a socket`);
    expect(readFileSync(file, "utf8")).toBe("keep\n");
    rmSync(file);
    expect(JSON.parse(d.lxc("query", `/1.0/instances/${c}`).stdout).devices).toEqual({});
    expect(relayPid(c, "p")).toBe(0);
    // a stored config that no longer validates is still stopped and removed cleanly
    ok(d.lxc("config", "device", "add", c, "p", "proxy", `listen=tcp:127.0.0.1:${port}`, "connect=tcp:127.0.0.1:4321"));
    const pid = relayPid(c, "p");
    expect(isAlive(pid)).toBe(true);
    ok(d.cli("sql", "global", `UPDATE instances_devices_config SET value='tcp:localhost:4321' WHERE value='tcp:127.0.0.1:4321'`));
    ok(d.lxc("config", "device", "remove", c, "p"));
    expect(isAlive(pid)).toBe(false);
    ok(d.lxc("config", "device", "add", c, "p", "proxy", `listen=tcp:127.0.0.1:${port}`, "connect=tcp:127.0.0.1:4321"));
  });

  it("nat=true: DNAT chains in inet lxd towards the static bridge address, removed with the device", async () => {
    const net = `pxn${Math.random().toString(36).slice(2, 7)}`;
    const third = 100 + Math.floor(Math.random() * 100);
    ok(d.lxc("network", "create", net, `ipv4.address=10.251.${third}.1/24`, "ipv4.nat=false", "ipv6.address=none"));
    const c = d.instanceName("nat");
    try {
      ok(d.lxc("init", "busybox", c, "-q", "-n", net));
      ok(d.lxc("config", "device", "set", c, "eth0", "ipv4.address", `10.251.${third}.10`));
      ok(d.lxc("start", c));
      const label = `${c}.n`;
      const bad = d.lxc("config", "device", "add", c, "n", "proxy", "listen=tcp:127.0.0.1:1234", `connect=tcp:10.251.${third}.99:1234`, "nat=true");
      expect(bad.stderr).toContain(`Failed to start device "n": Failed to start device "n": Connect IP "10.251.${third}.99" must be one of the instance's static IPv4 addresses`);
      ok(d.lxc("config", "device", "add", c, "n", "proxy", "listen=tcp:127.0.0.1:1234-1235", `connect=tcp:10.251.${third}.10:1234`, "nat=true"));
      const chain = spawnSync("nft", ["-nn", "list", "chain", "inet", "lxd", `prert.${label}`], { encoding: "utf8" }).stdout;
      expect(chain).toContain(`ip daddr 127.0.0.1 tcp dport 1234-1235 dnat ip to 10.251.${third}.10:1234`);
      ok(d.lxc("config", "device", "remove", c, "n"));
      expect(spawnSync("nft", ["list", "chain", "inet", "lxd", `prert.${label}`]).status).not.toBe(0);
    } finally {
      d.lxc("delete", "-f", c);
      d.lxc("network", "delete", net);
    }
  });
});
