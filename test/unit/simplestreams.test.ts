import { describe, expect, it } from "vitest";
import { aliasesOf, findAlias, productsToImages } from "../../src/images/remote/simplestreams.js";

const h = (c: string) => c.repeat(64);

const products = {
  products: {
    "debian:12:amd64:default": {
      aliases: "debian/12,debian/bookworm",
      arch: "amd64",
      os: "Debian",
      release: "bookworm",
      release_title: "12",
      variant: "default",
      versions: {
        "20240101_05:24": {
          items: {
            "lxd.tar.xz": { ftype: "lxd.tar.xz", path: "images/d/old/lxd.tar.xz", sha256: h("1"), size: 10, combined_squashfs_sha256: h("a"), combined_rootxz_sha256: h("b") },
            "root.squashfs": { ftype: "squashfs", path: "images/d/old/rootfs.squashfs", sha256: h("2"), size: 100 },
            "root.tar.xz": { ftype: "root.tar.xz", path: "images/d/old/rootfs.tar.xz", sha256: h("3"), size: 90 },
          },
        },
        "20240202_05:24": {
          items: {
            "lxd.tar.xz": { ftype: "lxd.tar.xz", path: "images/d/new/lxd.tar.xz", sha256: h("4"), size: 10, combined_squashfs_sha256: h("c") },
            "root.squashfs": { ftype: "squashfs", path: "images/d/new/rootfs.squashfs", sha256: h("5"), size: 100 },
          },
        },
      },
    },
    "busybox:1:arm64": {
      aliases: "busybox",
      arch: "arm64",
      os: "BusyBox",
      release: "1",
      versions: { "20240101": { items: { c: { ftype: "lxd_combined.tar.gz", path: "b/combined.tar.gz", sha256: h("d"), size: 5 } } } },
    },
    "bogus:1:nosuch": { arch: "nosucharch", versions: { "20240101": { items: { c: { ftype: "lxd_combined.tar.gz", path: "x", sha256: h("e") } } } } },
    "evil:1:amd64": { arch: "amd64", aliases: "evil", versions: { "20240101": { items: { c: { ftype: "lxd_combined.tar.gz", path: "../../etc/passwd", sha256: h("f") } } } } },
  },
};

describe("simplestreams products", () => {
  const images = productsToImages(products);

  it("gives one image per lxd.tar.xz + rootfs item and per combined tarball, fingerprint = combined sha256", () => {
    expect(images.map((i) => i.fingerprint).sort()).toEqual([h("a"), h("b"), h("c"), h("d")]);
    const sq = images.find((i) => i.fingerprint === h("a"))!;
    expect(sq.properties).toMatchObject({ os: "Debian", release: "bookworm", variant: "default", serial: "20240101_05:24", type: "squashfs", architecture: "amd64" });
    expect(sq.properties.description).toBe("Debian 12 amd64 (20240101_05:24)");
    expect(sq.architecture).toBe("x86_64");
    expect(sq.size).toBe(110);
    expect(sq.created_at).toBe("2024-01-01T00:00:00Z");
    expect(sq.files.root?.path).toBe("images/d/old/rootfs.squashfs");
    const combined = images.find((i) => i.fingerprint === h("d"))!;
    expect(combined.properties.type).toBe("tar.gz");
    expect(combined.files.root).toBeUndefined();
    expect(combined.architecture).toBe("aarch64");
  });

  it("skips unknown architectures and paths that leave the server's tree", () => {
    expect(images.some((i) => i.fingerprint === h("e") || i.fingerprint === h("f"))).toBe(false);
  });

  it("aliases: the newest serial wins, squashfs before root.tar.xz, and <alias>/<arch> is synthesised", () => {
    const aliases = aliasesOf(images, "x86_64");
    expect(findAlias(aliases, "debian/12", "container")?.target).toBe(h("c"));
    expect(findAlias(aliases, "debian/bookworm/amd64", "container")?.target).toBe(h("c"));
    expect(findAlias(aliases, "busybox/arm64", "")?.target).toBe(h("d"));
    expect(findAlias(aliases, "debian/12", "virtual-machine")).toBeUndefined();
    expect(findAlias(aliases, "nope", "")).toBeUndefined();
  });
});
