// One rsync stream of a migration over a real websocket on loopback (127.0.54.61), the sending
// rsync behind `nodelxd-rsync relay` and the receiving one in `nodelxd-rsync jail`: the received
// tree equals the sent one (contents, modes, numeric owners, links, mtimes), with LXD's fixed
// protocol-30 transfer and with the negotiated one nodelxd peers use; and the jail holds only the
// target and a read-only /usr, in a mount namespace the host never sees.
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chownSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, utimesSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { Readable, Writable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WebSocket, WebSocketServer } from "ws";
import { rsyncRecv, rsyncSend } from "../../src/migration/rsync-stream.js";
import { MigrationChannel } from "../../src/migration/ws-io.js";
import { treeHash } from "../helpers/tree-hash.js";

const { WebSocket: WS, WebSocketServer: WSS } = createRequire(import.meta.url)("ws") as typeof import("ws");
const HELPER = new URL("../../build/Release/nodelxd-rsync", import.meta.url).pathname;
const FEATURES = ["xattrs", "delete", "compress", "bidirectional"];

let base: string;
let server: WebSocketServer;

/** A connected pair of migration channels over a websocket on loopback. */
async function channelPair(): Promise<[MigrationChannel, MigrationChannel]> {
  const accepted = new Promise<WebSocket>((r) => server.once("connection", (ws: WebSocket) => r(ws)));
  const client = new WS(`ws://127.0.54.61:${(server.address() as AddressInfo).port}/`, { perMessageDeflate: false });
  await new Promise((r, j) => (client.once("open", r), client.once("error", j)));
  return [new MigrationChannel(await accepted, "fs"), new MigrationChannel(client, "fs")];
}

function makeTree(dir: string): void {
  mkdirSync(join(dir, "etc/empty"), { recursive: true });
  writeFileSync(join(dir, "etc/hostname"), "c1\n");
  writeFileSync(join(dir, "big"), Buffer.alloc(3 << 20, 7));
  writeFileSync(join(dir, "owned"), "x", { mode: 0o640 });
  chownSync(join(dir, "owned"), 1001000, 1001001);
  chownSync(join(dir, "etc/empty"), 1234, 4321);
  symlinkSync("/etc/hostname", join(dir, "abs-link"));
  symlinkSync("../../../../outside", join(dir, "etc/rel-link"));
  utimesSync(join(dir, "etc/hostname"), 1_600_000_000, 1_600_000_000);
}

async function transfer(src: string, dst: string, negotiate: boolean): Promise<void> {
  const [a, b] = await channelPair();
  try {
    await Promise.all([rsyncSend("c1", src, a, { features: FEATURES }), rsyncRecv(dst, join(base, "jail"), b, { features: FEATURES, negotiate })]);
  } finally {
    a.close();
    b.close();
  }
}

beforeAll(async () => {
  base = mkdtempSync("/tmp/ms-rsync-test-");
  mkdirSync(join(base, "jail"));
  server = new WSS({ host: "127.0.54.61", port: 0, perMessageDeflate: false });
  await new Promise((r) => server.once("listening", r));
});

afterAll(async () => {
  await new Promise((r) => server?.close(r));
  if (base) rmSync(base, { recursive: true, force: true });
});

describe("rsync over a migration websocket", () => {
  for (const negotiate of [false, true]) {
    it(`the received tree equals the sent one (${negotiate ? "negotiated, as between nodelxd peers" : "LXD's fixed protocol-30 transfer"})`, async () => {
      const src = join(base, `src-${negotiate}`);
      const dst = join(base, `dst-${negotiate}`);
      mkdirSync(src);
      mkdirSync(dst);
      makeTree(src);
      // A file the sender no longer has goes (--delete), a changed one is re-sent.
      writeFileSync(join(dst, "stale"), "old");
      await transfer(src, dst, negotiate);
      expect(treeHash(dst)).toBe(treeHash(src));
      expect(existsSync(join(dst, "stale"))).toBe(false);
      expect(lstatSync(join(dst, "etc/hostname")).mtimeMs).toBe(1_600_000_000_000);
      // The second pass (as a refresh): a changed file arrives (with a new mtime: within the same
      // second rsync's quick check would skip it, which invalidateQuickCheck covers).
      writeFileSync(join(src, "big"), Buffer.alloc(3 << 20, 9));
      utimesSync(join(src, "big"), 1_700_000_000, 1_700_000_000);
      await transfer(src, dst, negotiate);
      expect(readFileSync(join(dst, "big"))[0]).toBe(9);
      expect(treeHash(dst)).toBe(treeHash(src));
      // The relative link that points above the volume was stored as a link, never followed.
      expect(existsSync(join(base, "outside"))).toBe(false);
    });
  }

  it("a receiver that cannot start fails at once, with rsync's or the jail's words", async () => {
    const [a, b] = await channelPair();
    try {
      const recv = rsyncRecv(join(base, "dst-none"), join(base, "no-jail-dir"), b, { features: FEATURES });
      await expect(recv).rejects.toThrow(/Rsync receive failed: .*dst-none: exit status 1 \(nodelxd-rsync: mount tmpfs on .*no-jail-dir: No such file or directory\)/);
    } finally {
      a.close();
      b.close();
    }
  });

  it("a sender that fails reaches the receiver as a failed stream, and the error names rsync's", async () => {
    const [a, b] = await channelPair();
    const dst = join(base, "dst-missing");
    mkdirSync(dst);
    try {
      const results = await Promise.allSettled([rsyncSend("c1", join(base, "no-such-dir"), a, { features: FEATURES }), rsyncRecv(dst, join(base, "jail"), b, { features: FEATURES })]);
      expect(results[0].status).toBe("rejected");
      expect(String((results[0] as PromiseRejectedResult).reason)).toMatch(/Rsync send failed: c1, .*no-such-dir.*exit status/);
    } finally {
      a.close();
      b.close();
    }
  });
});

describe("a stream piped into a writer (MigrationChannel.pipeStreamTo, the receiving rsync's stdin)", () => {
  /** A writer that takes `delayMs` per write (or per batch of a writev) and can fail at its `failAt`-th call of either. */
  function slowWriter(delayMs: number, failAt?: number) {
    const got: Buffer[] = [];
    const calls = { write: 0, writev: 0 };
    const w = new Writable({
      highWaterMark: 64 << 10,
      write(chunk: Buffer, _enc, cb) {
        if (++calls.write + calls.writev === failAt) return cb(new Error("writer broke"));
        got.push(chunk);
        setTimeout(cb, delayMs);
      },
      writev(chunks, cb) {
        if (calls.write + ++calls.writev === failAt) return cb(new Error("writer broke"));
        for (const c of chunks) got.push(c.chunk as Buffer);
        setTimeout(cb, delayMs);
      },
    });
    return { w, got, calls };
  }
  const messages = (n: number) => Array.from({ length: n }, (_, i) => randomBytes(1000 + ((i * 7919) % 60_000)));

  it("delivers the stream whole and in order to a slow writer, in batches, and leaves no listeners on it", async () => {
    const [a, b] = await channelPair();
    try {
      const sent = messages(200);
      const { w, got, calls } = slowWriter(2);
      const sending = a.sendStream(Readable.from(sent)).then(() => a.sendStream(Readable.from([Buffer.from("next stream")])));
      await b.pipeStreamTo(w);
      await new Promise((r) => w.once("finish", r));
      expect(Buffer.concat(got).equals(Buffer.concat(sent))).toBe(true);
      // Messages that queued while the writer was busy went out together.
      expect(calls.writev).toBeGreaterThan(0);
      expect(calls.write + calls.writev).toBeLessThan(sent.length);
      expect(w.listenerCount("drain") + w.listenerCount("close") + w.listenerCount("error")).toBeLessThanOrEqual(1);
      // The barrier ended this stream only: the next one on the channel is intact.
      expect((await b.readAll(1 << 20)).toString()).toBe("next stream");
      await sending;
    } finally {
      a.close();
      b.close();
    }
  });

  it("reads a stream to its barrier even when the writer fails, so the next stream is intact", async () => {
    const [a, b] = await channelPair();
    try {
      const { w } = slowWriter(1, 3);
      w.on("error", () => {});
      const sending = a.sendStream(Readable.from(messages(50))).then(() => a.sendStream(Readable.from([Buffer.from("after")])));
      await b.pipeStreamTo(w);
      expect(w.destroyed).toBe(true);
      expect((await b.readAll(1 << 20)).toString()).toBe("after");
      await sending;
    } finally {
      a.close();
      b.close();
    }
  });

  it("fails when the websocket closes before the stream's barrier", async () => {
    const [a, b] = await channelPair();
    const { w } = slowWriter(0);
    await a.send(randomBytes(4096));
    const piping = b.pipeStreamTo(w);
    a.close();
    await expect(piping).rejects.toThrow(/fs websocket closed/);
    b.close();
  });
});

describe("the receiver's jail (nodelxd-rsync jail)", () => {
  const jail = (...args: string[]) => spawnSync(HELPER, ["jail", join(base, "jail2"), join(base, "target"), ...args], { encoding: "utf8", env: { PATH: "/usr/sbin:/usr/bin:/sbin:/bin" } });

  beforeAll(() => {
    mkdirSync(join(base, "jail2"), { recursive: true });
    mkdirSync(join(base, "target"), { recursive: true });
    writeFileSync(join(base, "target", "f"), "in the volume");
  });

  it("holds only the target at /t and /usr (with its links); nothing else of the host", () => {
    const r = jail("--list-only", "/");
    expect(r.status).toBe(0);
    const names = r.stdout.split("\n").filter(Boolean).map((l) => l.split(/\s+/).pop());
    expect(names.filter((n) => !["bin", "lib", "lib64", "sbin"].includes(n!)).sort()).toEqual([".", "t", "usr"]);
    expect(jail("--list-only", "/t/f").stdout).toMatch(/ f$/m);
    const etc = jail("-r", "--list-only", "/etc/");
    expect(etc.status).not.toBe(0);
    expect(etc.stderr).toMatch(/change_dir "\/etc" failed: No such file or directory/);
  });

  it("/usr is read-only there, and the host's mount table never shows the jail", () => {
    const r = jail("/t/f", "/usr/");
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/Read-only file system/);
    expect(readFileSync("/proc/self/mounts", "utf8")).not.toContain(join(base, "jail2"));
  });

  it("refuses relative paths and a usage it does not know", () => {
    expect(spawnSync(HELPER, ["jail", "rel", join(base, "target"), "--version"], { encoding: "utf8" }).status).not.toBe(0);
    expect(spawnSync(HELPER, ["other"], { encoding: "utf8" }).status).toBe(2);
  });
});
