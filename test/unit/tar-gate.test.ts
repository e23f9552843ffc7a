// The tar gate alone: which members it lets through, which it refuses, and that what it
// forwards is byte-for-byte what it read.
import { Readable, Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { describe, expect, it } from "vitest";
import { TarGate, TarRefused } from "../../src/images/tar-gate.js";
import { entry, imageTar, pax, tarball } from "../helpers/tar-writer.js";

async function pass(buf: Buffer, opts: ConstructorParameters<typeof TarGate>[0] = {}): Promise<{ gate: TarGate; out: Buffer }> {
  const gate = new TarGate(opts);
  const chunks: Buffer[] = [];
  // Odd chunk sizes exercise headers split across reads.
  const pieces: Buffer[] = [];
  for (let i = 0; i < buf.length; i += 333) pieces.push(buf.subarray(i, i + 333));
  await pipeline(Readable.from(pieces), gate, new Writable({ write: (c, _e, cb) => (chunks.push(c), cb()) }));
  return { gate, out: Buffer.concat(chunks) };
}

const refused = async (buf: Buffer, pattern: RegExp, opts: ConstructorParameters<typeof TarGate>[0] = {}) => {
  const err = await pass(buf, opts).then(
    () => undefined,
    (e) => e,
  );
  expect(err).toBeInstanceOf(TarRefused);
  expect(err.message).toMatch(pattern);
};

describe("tar gate", () => {
  it("passes a normal image through unchanged and captures metadata.yaml", async () => {
    const tar = imageTar(entry({ name: "rootfs/bin/sh", type: "2", linkname: "/bin/busybox" }), entry({ name: "rootfs/dev/null", type: "3" }));
    const { gate, out } = await pass(tar, { capture: "metadata.yaml" });
    expect(out.equals(tar)).toBe(true);
    expect(gate.captured?.toString()).toContain("architecture: x86_64");
    expect(gate.sawRootfs).toBe(true);
    expect(gate.count).toBe(6);
  });

  it("accepts ./-prefixed names and the archive root entry", async () => {
    const tar = tarball(entry({ name: "./", type: "5" }), entry({ name: "./metadata.yaml", data: "x" }), entry({ name: "./rootfs/", type: "5" }));
    const { gate } = await pass(tar, { capture: "metadata.yaml" });
    expect(gate.captured?.toString()).toBe("x");
  });

  it("drops anything after the end-of-archive marker", async () => {
    const tar = Buffer.concat([imageTar(), entry({ name: "../evil", data: "x" })]);
    const { out } = await pass(tar);
    expect(out.equals(imageTar())).toBe(true);
  });

  it("refuses .. components", () => refused(imageTar(entry({ name: "rootfs/../../evil", data: "x" })), /contains '\.\.'/));
  it("refuses absolute paths", () => refused(imageTar(entry({ name: "/tmp/evil", data: "x" })), /absolute path/));
  it("refuses a member written through an earlier symlink", () =>
    refused(imageTar(entry({ name: "rootfs/link", type: "2", linkname: "/tmp" }), entry({ name: "rootfs/link/evil", data: "x" })), /goes through the symbolic link rootfs\/link/));
  it("refuses a member written through a relative symlink too", () =>
    refused(imageTar(entry({ name: "rootfs/up", type: "2", linkname: "../.." }), entry({ name: "rootfs/up/x", type: "5" })), /goes through the symbolic link/));
  it("refuses replacing an earlier symlink", () =>
    refused(imageTar(entry({ name: "rootfs/link", type: "2", linkname: "/etc" }), entry({ name: "rootfs/link", type: "5" })), /replaces a symbolic link/));
  it("refuses hard links to absolute or escaping targets", async () => {
    await refused(imageTar(entry({ name: "rootfs/passwd", type: "1", linkname: "/etc/passwd" })), /absolute path/);
    await refused(imageTar(entry({ name: "rootfs/passwd", type: "1", linkname: "../../etc/passwd" })), /contains '\.\.'/);
  });
  it("refuses hard links through a symlink, or to something not in the archive", async () => {
    await refused(imageTar(entry({ name: "rootfs/l", type: "2", linkname: "/etc" }), entry({ name: "rootfs/p", type: "1", linkname: "rootfs/l/passwd" })), /goes through the symbolic link/);
    await refused(imageTar(entry({ name: "rootfs/p", type: "1", linkname: "rootfs/etc/shadow" })), /not an earlier member/);
  });
  it("treats a hard link to a symlink as a symlink", () =>
    refused(
      imageTar(entry({ name: "rootfs/l", type: "2", linkname: "/etc" }), entry({ name: "rootfs/m", type: "1", linkname: "rootfs/l" }), entry({ name: "rootfs/m/passwd", data: "x" })),
      /goes through the symbolic link rootfs\/m/,
    ));
  it("refuses rootfs or templates that are not directories", async () => {
    await refused(tarball(entry({ name: "metadata.yaml", data: "x" }), entry({ name: "rootfs", type: "2", linkname: "/" })), /must be a directory/);
    await refused(tarball(entry({ name: "templates", type: "2", linkname: "/etc" })), /must be a directory/);
  });
  it("refuses symlinks outside rootfs/ (templates would be read through them)", () =>
    refused(tarball(entry({ name: "templates/", type: "5" }), entry({ name: "templates/x.tpl", type: "2", linkname: "/etc/shadow" })), /outside rootfs/));
  it("allows device nodes only under rootfs/dev/", async () => {
    await refused(imageTar(entry({ name: "rootfs/etc/sda", type: "4" })), /Device node .* outside rootfs\/dev/);
    await refused(tarball(entry({ name: "fifo", type: "6" })), /FIFO fifo outside rootfs/);
    await pass(imageTar(entry({ name: "rootfs/dev/", type: "5" }), entry({ name: "rootfs/dev/sda", type: "4" }), entry({ name: "rootfs/run/fifo", type: "6" })));
  });
  it("applies pax path and linkpath the way GNU tar does", async () => {
    await refused(imageTar(pax({ path: "../evil" }), entry({ name: "rootfs/innocent", data: "x" })), /contains '\.\.'/);
    await refused(imageTar(entry({ name: "rootfs/l", type: "2", linkname: "/" }), pax({ linkpath: "rootfs/l/etc/passwd" }), entry({ name: "rootfs/h", type: "1", linkname: "rootfs/etc/hostname" })), /goes through the symbolic link/);
    const ok = await pass(imageTar(pax({ path: "rootfs/" + "long/".repeat(40) + "file" }), entry({ name: "rootfs/short", data: "x" })));
    expect(ok.gate.count).toBe(5);
  });
  it("applies GNU long names", () => {
    const ln = entry({ name: "././@LongLink", type: "L", data: "../../evil\0" });
    const h = ln.subarray(0, 512);
    h.write("ustar  \0", 257, "latin1");
    let sum = 0;
    h.write("        ", 148, "latin1");
    for (const x of h) sum += x;
    h.write(sum.toString(8).padStart(6, "0") + "\0 ", 148, "latin1");
    return refused(imageTar(ln, entry({ name: "rootfs/x", data: "x" })), /contains '\.\.'/);
  });
  it("uses the ustar prefix field", () => {
    const e = entry({ name: "x", data: "x" });
    e.write("rootfs/../..", 345, "latin1");
    let sum = 0;
    e.write("        ", 148, "latin1");
    for (const b of e.subarray(0, 512)) sum += b;
    e.write(sum.toString(8).padStart(6, "0") + "\0 ", 148, "latin1");
    return refused(imageTar(e), /contains '\.\.'/);
  });
  it("refuses non-directories with a trailing slash (GNU tar would make them directories)", () =>
    refused(imageTar(entry({ name: "rootfs/x/", data: Buffer.alloc(1024) })), /trailing slash/));

  it("compares names byte for byte, whatever their encoding", async () => {
    const { gate } = await pass(imageTar(entry({ name: "rootfs/\xff\xfe/", type: "5" }), entry({ name: "rootfs/caf\u00e9", data: "x" })));
    expect(gate.count).toBe(6);
  });

  it("fails closed on what it does not understand", async () => {
    await refused(imageTar(entry({ name: "rootfs/x", data: "x", badChecksum: true })), /checksum/);
    await refused(imageTar(pax({ "GNU.sparse.major": "1" }), entry({ name: "rootfs/x", data: "x" })), /Sparse/);
    await refused(imageTar(entry({ name: "rootfs/d", type: "5", size: 512, data: Buffer.alloc(512) })), /carries data/);
    await refused(imageTar(entry({ name: "rootfs/v", data: "x".repeat(2000) })).subarray(0, 2600), /Unexpected end/);
    const g = entry({ name: "g", type: "g", data: "12 path=abc\n" });
    await refused(imageTar(g), /global/);
  });
  it("prefixes a split rootfs tarball's members with rootfs/", async () => {
    const rootfsTar = tarball(entry({ name: "./", type: "5" }), entry({ name: "./dev/", type: "5" }), entry({ name: "./dev/null", type: "3" }), entry({ name: "./bin/sh", type: "2", linkname: "busybox" }));
    await pass(rootfsTar, { root: "rootfs" });
    await refused(tarball(entry({ name: "bin", type: "2", linkname: "/" }), entry({ name: "bin/x", data: "x" })), /goes through the symbolic link rootfs\/bin/, { root: "rootfs" });
  });
});

describe("tar gate, backup mode", () => {
  const opts = { backup: true, capture: "backup/index.yaml" };
  const base = (...extra: Buffer[]) =>
    tarball(
      entry({ name: "backup/", type: "5" }),
      entry({ name: "backup/index.yaml", data: "name: c1\n" }),
      entry({ name: "backup/container/", type: "5" }),
      entry({ name: "backup/container/metadata.yaml", data: "x" }),
      entry({ name: "backup/container/rootfs/", type: "5" }),
      entry({ name: "backup/container/rootfs/bin/", type: "5" }),
      entry({ name: "backup/container/rootfs/bin/busybox", data: "b" }),
      entry({ name: "backup/snapshots/", type: "5" }),
      entry({ name: "backup/snapshots/s1/", type: "5" }),
      entry({ name: "backup/snapshots/s1/rootfs/", type: "5" }),
      entry({ name: "backup/snapshots/s1/rootfs/bin/", type: "5" }),
      entry({ name: "backup/snapshots/s1/rootfs/bin/busybox", data: "b" }),
      ...extra,
    );

  it("accepts LXD's layout, volume rules inside container/ and each snapshot", async () => {
    const tar = base(
      entry({ name: "backup/container/rootfs/bin/sh", type: "2", linkname: "/bin/busybox" }),
      entry({ name: "backup/container/rootfs/dev/", type: "5" }),
      entry({ name: "backup/container/rootfs/dev/null", type: "3" }),
      entry({ name: "backup/snapshots/s1/rootfs/bin/ls", type: "1", linkname: "backup/snapshots/s1/rootfs/bin/busybox" }),
    );
    const { gate } = await pass(tar, opts);
    expect(gate.captured?.toString()).toBe("name: c1\n");
  });

  it("refuses members outside backup/ or in unknown places", async () => {
    await refused(base(entry({ name: "etc/passwd", data: "x" })), /not under backup\//, opts);
    await refused(base(entry({ name: "backup/other/x", data: "x" })), /Unexpected member/, opts);
    await refused(base(entry({ name: "backup/container/rootfs/../../../x", data: "x" })), /'\.\.'/, opts);
  });

  it("applies the rootfs rules per volume and keeps hard links inside one volume", async () => {
    await refused(base(entry({ name: "backup/container/link", type: "2", linkname: "/etc" })), /outside rootfs/, opts);
    await refused(base(entry({ name: "backup/snapshots/s1/null", type: "3" })), /outside rootfs\/dev/, opts);
    await refused(base(entry({ name: "backup/container/rootfs/x", type: "1", linkname: "backup/snapshots/s1/rootfs/bin/busybox" })), /outside its volume/, opts);
    await refused(base(entry({ name: "backup/container/rootfs/l", type: "2", linkname: "/" }), entry({ name: "backup/container/rootfs/l/etc/shadow", data: "x" })), /symbolic link/, opts);
    await refused(base(entry({ name: "backup/index.yaml/", type: "5" })), /regular file|replaces|must be/, opts);
  });
});
