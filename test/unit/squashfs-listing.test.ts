// The squashfs side of the image gate: unsquashfs -lln listings read as tar members.
import { describe, expect, it } from "vitest";
import { checkSquashfsListing } from "../../src/images/squashfs.js";

const line = (mode: string, size: string, name: string) => `${mode} 0/0 ${size.padStart(20)} 2020-01-01 00:00 ${name}`;
const root = line("drwxr-xr-x", "37", "squashfs-root");

describe("squashfs listings", () => {
  it("accepts an ordinary rootfs: dirs, files, symlinks anywhere, devices under dev/", () => {
    const listing = [
      root,
      line("drwxr-xr-x", "3", "squashfs-root/bin"),
      line("-rwsr-xr-x", "1024", "squashfs-root/bin/busybox"),
      line("lrwxrwxrwx", "12", "squashfs-root/bin/sh -> /bin/busybox"),
      line("lrwxrwxrwx", "5", "squashfs-root/etc -> ../x"),
      line("drwxr-xr-x", "3", "squashfs-root/dev"),
      line("crw-rw-rw-", "1,  3", "squashfs-root/dev/null"),
      line("-rw-r--r--", "0", "squashfs-root/name with -> arrow"),
    ].join("\n") + "\n";
    expect(checkSquashfsListing(listing)).toBe(8);
  });

  it.each([
    ["a device outside dev/", line("brw-r--r--", "8,  0", "squashfs-root/etc/sda"), /Device node etc\/sda outside rootfs\/dev\//],
    ["a member through a symlink", [line("lrwxrwxrwx", "4", "squashfs-root/up -> /etc"), line("-rw-r--r--", "1", "squashfs-root/up/passwd")].join("\n"), /goes through the symbolic link/],
    ["'..' in a name", line("-rw-r--r--", "1", "squashfs-root/../x"), /contains '\.\.'/],
    ["an ambiguous symlink", line("lrwxrwxrwx", "4", "squashfs-root/a -> b -> c"), /Ambiguous/],
    ["a line it cannot read (a name with a newline)", [line("-rw-r--r--", "1", "squashfs-root/a"), "b"].join("\n"), /Unexpected squashfs listing line/],
    ["a socket", line("srwxr-xr-x", "0", "squashfs-root/s"), /Unsupported squashfs member type/],
  ])("refuses %s", (_what, rest, err) => {
    expect(() => checkSquashfsListing(`${root}\n${rest}\n`)).toThrow(err);
  });

  it("refuses a listing that does not start at the squashfs root", () => {
    expect(() => checkSquashfsListing(line("-rw-r--r--", "1", "squashfs-root/x"))).toThrow(/Unreadable squashfs listing/);
  });
});
