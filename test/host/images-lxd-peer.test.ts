// The LXD protocol in both directions with real LXD 5.0.2 as the peer, over HTTPS on 127.0.0.x:
// nodelxd launches a private image of real LXD (a secret made by the client, the server's
// certificate pinned), and real LXD copies and launches a private image of nodelxd.
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startDaemon, type TestDaemon } from "../helpers/daemon.js";
import { busyboxImage } from "../helpers/image.js";
import { startReferenceLxd, type ReferenceLxd } from "../helpers/reference.js";

let d: TestDaemon;
let ref: ReferenceLxd;
let refDir: string;
let tmp: string;
const octet = () => 2 + Math.floor(Math.random() * 250);
const port = () => 20000 + Math.floor(Math.random() * 30000);
const refAddr = `127.0.0.${octet()}:${port()}`;
const ourAddr = `127.0.0.${octet()}:${port()}`;
const tag = `p${process.pid.toString(36)}${Math.random().toString(36).slice(2, 5)}`;
const ours: string[] = [];
const theirs: string[] = [];

const run = (args: string[], env: Record<string, string>): Promise<{ code: number; stdout: string; stderr: string }> =>
  new Promise((resolve) => {
    const p = spawn("lxc", args, { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    p.stdout.on("data", (c) => (stdout += c));
    p.stderr.on("data", (c) => (stderr += c));
    const t = setTimeout(() => p.kill("SIGKILL"), 150_000);
    p.on("close", (code) => {
      clearTimeout(t);
      resolve({ code: code ?? -1, stdout, stderr });
    });
  });
/** The stock client against nodelxd (local) with its remotes. */
const lxcOurs = (...args: string[]) => run(args, { LXD_DIR: d.dir, LXD_CONF: d.dir + ".lxdconf" });
/** The stock client against real LXD (local) with its remotes. */
const lxcRef = (...args: string[]) => run(args, { LXD_DIR: refDir, LXD_CONF: join(tmp, "refconf") });
const must = async (p: Promise<{ code: number; stdout: string; stderr: string }>) => {
  const r = await p;
  if (r.code !== 0) throw new Error(r.stderr);
  return r.stdout;
};

beforeAll(async () => {
  tmp = mkdtempSync("/tmp/nodelxd-test-peer-");
  ref = await startReferenceLxd();
  refDir = ref.socket.replace(/\/unix\.socket$/, "");
  d = await startDaemon();
  for (const lxc of [lxcOurs, lxcRef]) {
    await must(lxc("storage", "create", "default", "dir"));
    await must(lxc("profile", "device", "add", "default", "root", "disk", "path=/", "pool=default"));
    await must(lxc("image", "import", busyboxImage(), "--alias", "busybox"));
  }
  await must(lxcRef("config", "set", "core.https_address", refAddr));
  await must(lxcRef("config", "set", "core.trust_password", "peer-pw"));
  await must(lxcOurs("config", "set", "core.https_address", ourAddr));
  await must(lxcOurs("config", "set", "core.trust_password", "peer-pw"));
  await must(lxcOurs("remote", "add", "lxd502", `https://${refAddr}`, "--accept-certificate", "--password", "peer-pw"));
  await must(lxcRef("remote", "add", "ours", `https://${ourAddr}`, "--accept-certificate", "--password", "peer-pw"));
}, 240_000);

afterAll(async () => {
  for (const n of ours) await lxcOurs("delete", "-f", n);
  for (const n of theirs) await lxcRef("delete", "-f", n);
  await d?.stop();
  await ref?.stop();
  rmSync(tmp, { recursive: true, force: true });
}, 120_000);

describe("real LXD 5.0.2 as the image server", () => {
  it("lxc launch lxd502:busybox c3 pulls the private image through a secret, the certificate pinned", async () => {
    const info = JSON.parse(await must(lxcOurs("query", "lxd502:/1.0/images/aliases/busybox")));
    expect(JSON.parse(await must(lxcOurs("query", `lxd502:/1.0/images/${info.target}`))).public).toBe(false);
    // Both daemons imported the same busybox image: ours must not have it for the pull to happen.
    await must(lxcOurs("image", "delete", info.target));
    const c3 = `${tag}-c3`;
    ours.push(c3);
    const r = await lxcOurs("launch", "lxd502:busybox", c3);
    expect(r.code, r.stderr).toBe(0);
    expect((await must(lxcOurs("exec", c3, "--", "cat", "/etc/hostname"))).trim()).toBe(c3);
    const img = JSON.parse(await must(lxcOurs("query", `/1.0/images/${info.target}`)));
    expect(img).toMatchObject({ fingerprint: info.target, cached: true, public: false });
    // The secret was used up: the token operation on real LXD is gone or cancelled.
    const ops = JSON.parse((await must(lxcOurs("query", "lxd502:/1.0/operations?recursion=1"))).trim() || "{}");
    const tokens = [...(ops.running ?? [])].filter((o: any) => o.description === "Image download token");
    expect(tokens).toEqual([]);
  }, 180_000);

  it("a wrong certificate is refused before anything is sent", async () => {
    const info = JSON.parse(await must(lxcOurs("query", "lxd502:/1.0/images/aliases/busybox")));
    const ourCert = JSON.parse(await must(lxcOurs("query", "/1.0"))).environment.certificate;
    const r = await d.api("POST", "/1.0/images", { source: { type: "image", mode: "pull", server: `https://${refAddr}`, protocol: "lxd", fingerprint: info.target, certificate: ourCert } });
    const op = (await d.api("GET", `${r.body.operation}/wait?timeout=60`)).body.metadata;
    expect(op.status).toBe("Failure");
    expect(op.err).toMatch(/^Failed to connect to LXD server "https:\/\/127\.0\.0\.\d+:\d+": /);
  });
});

describe("nodelxd as the image server for real LXD", () => {
  it("an untrusted client sees public images only, and a private one with its single-use secret", async () => {
    // The image is ours again as the cached copy of the launch above: give it its alias back.
    const fp = JSON.parse(await must(lxcOurs("query", "lxd502:/1.0/images/aliases/busybox"))).target;
    await must(lxcOurs("image", "alias", "create", "busybox", fp));
    const get = (path: string) =>
      new Promise<{ status: number; body: any }>((resolve, reject) => {
        import("node:https").then(({ request }) => {
          const req = request(`https://${ourAddr}${path}`, { rejectUnauthorized: false }, (res) => {
            let t = "";
            res.on("data", (c) => (t += c));
            res.on("end", () => resolve({ status: res.statusCode ?? 0, body: t.startsWith("{") ? JSON.parse(t) : t }));
          });
          req.on("error", reject);
          req.end();
        });
      });
    expect((await get(`/1.0/images/${fp}`)).status).toBe(404);
    const op = await d.api("POST", `/1.0/images/${fp}/secret`);
    expect(op.status).toBe(202);
    expect(op.body.metadata).toMatchObject({ class: "token", description: "Image download token", resources: { images: [`/1.0/images/${fp}`] }, may_cancel: true });
    const secret = op.body.metadata.metadata.secret;
    expect(secret).toMatch(/^[0-9a-f]{64}$/);
    expect((await get(`/1.0/images/${fp}?secret=wrong`)).status).toBe(404);
    const ok = await get(`/1.0/images/${fp}?secret=${secret}`);
    expect(ok.status).toBe(200);
    expect(ok.body.metadata.fingerprint).toBe(fp);
    expect((await d.api("GET", op.body.operation)).body.metadata.status).toBe("Cancelled");
    expect((await get(`/1.0/images/${fp}/export?secret=${secret}`)).status).toBe(200);
    // Once the cancelled token is no longer listed, the secret opens nothing.
    await new Promise((r) => setTimeout(r, 5500));
    expect((await get(`/1.0/images/${fp}?secret=${secret}`)).status).toBe(404);
  }, 60_000);

  it("real LXD: lxc image copy ours:busybox local: and lxc launch ours:busybox x", async () => {
    const fp = JSON.parse(await must(lxcOurs("query", "/1.0/images/aliases/busybox"))).target;
    // The reference imported the same image under the same alias: remove its copy first.
    await lxcRef("image", "delete", fp);
    const r = await lxcRef("image", "copy", "ours:busybox", "local:", "--alias", "frompeer");
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(await must(lxcRef("query", "/1.0/images/aliases/frompeer"))).target).toBe(fp);
    await must(lxcRef("image", "delete", fp));
    const x = `${tag}-x`;
    theirs.push(x);
    const l = await lxcRef("launch", "ours:busybox", x);
    expect(l.code, l.stderr).toBe(0);
    expect(JSON.parse(await must(lxcRef("query", `/1.0/images/${fp}`))).cached).toBe(true);
  }, 180_000);
});
