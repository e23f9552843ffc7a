// The tar gate alone: which members it lets through, which it refuses, and that what it
// forwards is byte-for-byte what it read.
import { Readable, Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { describe, expect, it } from "vitest";
import { TarGate, TarRefused } from "../../src/images/tar-gate.js";
import { execFileSync } from "node:child_process";
import { existsSync, lstatSync, mkdtempSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { extractTarball } from "../../src/images/archive.js";
import { META, entry, imageTar, pax, tarball } from "../helpers/tar-writer.js";

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
  it("refuses .. components behind a leading slash too", async () => {
    await refused(imageTar(entry({ name: "/rootfs/../../evil", data: "x" })), /contains '\.\.'/);
    await refused(imageTar(entry({ name: "//../evil", data: "x" })), /contains '\.\.'/);
  });
  it("refuses a member written through an earlier symlink", () =>
    refused(imageTar(entry({ name: "rootfs/link", type: "2", linkname: "/tmp" }), entry({ name: "rootfs/link/evil", data: "x" })), /goes through the symbolic link rootfs\/link/));
  it("refuses a member written through a relative symlink too", () =>
    refused(imageTar(entry({ name: "rootfs/up", type: "2", linkname: "../.." }), entry({ name: "rootfs/up/x", type: "5" })), /goes through the symbolic link/));
  it("refuses replacing an earlier symlink", () =>
    refused(imageTar(entry({ name: "rootfs/link", type: "2", linkname: "/etc" }), entry({ name: "rootfs/link", type: "5" })), /replaces a symbolic link/));
  it("refuses hard links to absolute or escaping targets", async () => {
    // GNU tar reads "/etc/passwd" as the archive's etc/passwd, which is no earlier member here.
    await refused(imageTar(entry({ name: "rootfs/passwd", type: "1", linkname: "/etc/passwd" })), /not an earlier member/);
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

describe("tar gate, custom volume backup mode: block volumes", () => {
  const opts = { volumeBackup: true, capture: "backup/index.yaml" };
  const base = (...extra: Buffer[]) =>
    tarball(entry({ name: "backup/", type: "5" }), entry({ name: "backup/index.yaml", data: "name: v\n" }), entry({ name: "backup/volume-snapshots/", type: "5" }), ...extra);

  it("accepts LXD's disk files backup/volume.img and backup/volume-snapshots/NAME.img", async () => {
    const { gate } = await pass(base(entry({ name: "backup/volume-snapshots/s0.img", data: "disk0" }), entry({ name: "backup/volume.img", data: "disk" })), opts);
    expect(gate.captured?.toString()).toBe("name: v\n");
  });

  it("refuses disk names that are not regular files or not where LXD puts them", async () => {
    await refused(base(entry({ name: "backup/volume.img", type: "2", linkname: "/dev/sda" })), /./, opts);
    await refused(base(entry({ name: "backup/volume.img", type: "3" })), /./, opts);
    await refused(base(entry({ name: "backup/volume-snapshots/.img", data: "x" })), /must be a directory/, opts);
    await refused(base(entry({ name: "backup/other.img", data: "x" })), /Unexpected member/, opts);
    await refused(base(entry({ name: "backup/volume-snapshots/s0.img", type: "1", linkname: "backup/index.yaml" })), /./, opts);
  });
});

/** Member names as GNU tar lists them (no warnings: it would print "Removing leading `/'"). */
function tarList(buf: Buffer): { names: string[]; stderr: string } {
  const dir = mkdtempSync("/tmp/nodelxd-test-tarlist-");
  try {
    writeFileSync(join(dir, "a.tar"), buf);
    const out = execFileSync("sh", ["-c", `tar -tvf ${dir}/a.tar 2>${dir}/err`]).toString();
    return { names: out.trim().split("\n").map((l) => l.replace(/^.*? \d\d:\d\d /, "")), stderr: readFileSync(join(dir, "err"), "utf8") };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe("tar gate, leading slashes (LXD's suite writes /rootfs/... and /metadata.yaml)", () => {
  // As test/deps/import-busybox builds it: every member name starts with "/".
  const suiteImage = (...extra: Buffer[]) =>
    tarball(
      entry({ name: "/metadata.yaml", data: META }),
      entry({ name: "/rootfs/", type: "5" }),
      entry({ name: "/rootfs/bin/", type: "5" }),
      entry({ name: "/rootfs/bin/busybox", data: "bb", mode: 0o755 }),
      entry({ name: "/rootfs/bin/sh", type: "2", linkname: "/bin/busybox" }),
      entry({ name: "/rootfs/bin/ls", type: "1", linkname: "/rootfs/bin/busybox" }),
      entry({ name: "/rootfs/dev/", type: "5" }),
      entry({ name: "/templates/", type: "5" }),
      ...extra,
    );

  it("accepts the suite's image, captures /metadata.yaml, forwards relative names", async () => {
    const { gate, out } = await pass(suiteImage(), { capture: "metadata.yaml" });
    expect(gate.captured?.toString()).toBe(META);
    expect(gate.sawRootfs).toBe(true);
    expect(gate.count).toBe(8);
    const listed = tarList(out);
    expect(listed.stderr).toBe("");
    expect(listed.names).toEqual([
      "metadata.yaml",
      "rootfs/",
      "rootfs/bin/",
      "rootfs/bin/busybox",
      "rootfs/bin/sh -> /bin/busybox", // a symlink's target is its content: kept absolute
      "rootfs/bin/ls link to rootfs/bin/busybox",
      "rootfs/dev/",
      "templates/",
    ]);
  });

  it("leaves archives without leading slashes byte for byte", async () => {
    const tar = imageTar(pax({ path: "rootfs/" + "long/".repeat(40) + "f" }), entry({ name: "rootfs/short", data: "x" }));
    expect((await pass(tar)).out.equals(tar)).toBe(true);
  });

  it("rewrites pax paths, GNU long names, the ustar prefix, and hard link targets in pax linkpath", async () => {
    const long = "/rootfs/" + "long/".repeat(30) + "file";
    const ln = entry({ name: "././@LongLink", type: "L", data: "/rootfs/" + "gnu/".repeat(30) + "f\0" });
    const prefixed = entry({ name: "p", data: "p" });
    prefixed.write("/rootfs", 345, "latin1");
    prefixed.fill(0x20, 148, 156);
    let sum = 0;
    for (const b of prefixed.subarray(0, 512)) sum += b;
    prefixed.write(sum.toString(8).padStart(6, "0") + "\0 ", 148, "latin1");
    const tar = suiteImage(
      pax({ path: long }),
      entry({ name: "placeholder", data: "x" }),
      ln,
      entry({ name: "placeholder2", data: "y" }),
      prefixed,
      pax({ linkpath: "/rootfs/bin/busybox" }),
      entry({ name: "/rootfs/bin/cat", type: "1", linkname: "x" }),
    );
    const { out } = await pass(tar);
    const names = tarList(out);
    expect(names.stderr).toBe("");
    expect(names.names.slice(8)).toEqual([long.slice(1), "rootfs/" + "gnu/".repeat(30) + "f", "rootfs/p", "rootfs/bin/cat link to rootfs/bin/busybox"]);
  });

  it("still refuses every escape when names start with /", async () => {
    await refused(suiteImage(entry({ name: "/rootfs/../../evil", data: "x" })), /contains '\.\.'/);
    await refused(suiteImage(entry({ name: "/rootfs/link", type: "2", linkname: "/tmp" }), entry({ name: "/rootfs/link/evil", data: "x" })), /goes through the symbolic link rootfs\/link/);
    await refused(suiteImage(entry({ name: "/rootfs/link", type: "2", linkname: "/tmp" }), entry({ name: "rootfs/link/evil", data: "x" })), /goes through the symbolic link rootfs\/link/);
    await refused(suiteImage(entry({ name: "/rootfs/link", type: "2", linkname: "/etc" }), entry({ name: "/rootfs/link", type: "5" })), /replaces a symbolic link/);
    await refused(suiteImage(entry({ name: "/rootfs/l", type: "2", linkname: "/etc" }), entry({ name: "/rootfs/p", type: "1", linkname: "/rootfs/l/passwd" })), /goes through the symbolic link/);
    await refused(suiteImage(entry({ name: "/rootfs/p", type: "1", linkname: "/rootfs/../etc/shadow" })), /contains '\.\.'/);
    await refused(suiteImage(entry({ name: "/rootfs/etc/sda", type: "4" })), /Device node .* outside rootfs\/dev/);
    await refused(suiteImage(entry({ name: "/sda", type: "3" })), /Device node .* outside rootfs\/dev/);
    await refused(suiteImage(entry({ name: "/fifo", type: "6" })), /FIFO .* outside rootfs/);
    await refused(suiteImage(entry({ name: "/templates/x.tpl", type: "2", linkname: "/etc/shadow" })), /outside rootfs/);
    await refused(tarball(entry({ name: "/metadata.yaml", data: "x" }), entry({ name: "/rootfs", type: "2", linkname: "/" })), /must be a directory/);
    await refused(suiteImage(pax({ path: "/rootfs/../../x" }), entry({ name: "rootfs/y", data: "x" })), /contains '\.\.'/);
    await refused(tarball(entry({ name: "/", type: "0", data: "x" })), /trailing slash/);
    await refused(tarball(entry({ name: "//.", type: "0", data: "x" })), /not a directory/);
  });

  it("extracts with GNU tar where the gate said, for images and for a backup's selected volume", async () => {
    const dir = mkdtempSync("/tmp/nodelxd-test-tarx-");
    try {
      writeFileSync(join(dir, "img.tar"), suiteImage());
      execFileSync("mkdir", [join(dir, "img")]);
      await extractTarball(join(dir, "img.tar"), join(dir, "img"), {});
      expect(readFileSync(join(dir, "img/metadata.yaml"), "utf8")).toBe(META);
      expect(readlinkSync(join(dir, "img/rootfs/bin/sh"))).toBe("/bin/busybox");
      expect(statSync(join(dir, "img/rootfs/bin/ls")).ino).toBe(statSync(join(dir, "img/rootfs/bin/busybox")).ino);

      const backup = tarball(
        entry({ name: "/backup/", type: "5" }),
        entry({ name: "/backup/index.yaml", data: "name: c1\n" }),
        entry({ name: "/backup/container/", type: "5" }),
        entry({ name: "/backup/container/rootfs/", type: "5" }),
        entry({ name: "/backup/container/rootfs/f", data: "c" }),
        entry({ name: "/backup/container/rootfs/g", type: "1", linkname: "/backup/container/rootfs/f" }),
      );
      writeFileSync(join(dir, "b.tar"), backup);
      execFileSync("mkdir", [join(dir, "vol")]);
      await extractTarball(join(dir, "b.tar"), join(dir, "vol"), { backup: true }, { select: { member: "backup/container", strip: 2 } });
      expect(readFileSync(join(dir, "vol/rootfs/f"), "utf8")).toBe("c");
      expect(lstatSync(join(dir, "vol/rootfs/g")).nlink).toBe(2);
      expect(existsSync(join(dir, "vol/index.yaml"))).toBe(false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
