// applyTemplates on a real directory tree: files written where the container would see
// them, with LXD's owner and mode, and never through a symlink out of the rootfs.
import { chmodSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { applyTemplates, resolveInRoot } from "../../src/images/templates.js";

let base: string;
let vol: string;
let outside: string;
let n = 0;

// Made when the tests run, not when the file is collected (`vitest list` runs no afterAll).
beforeAll(() => {
  base = mkdtempSync("/tmp/nodelxd-test-tpl-");
});
beforeEach(() => {
  vol = join(base, `vol${n}`);
  outside = join(base, `outside${n++}`);
  mkdirSync(join(vol, "rootfs/etc"), { recursive: true });
  mkdirSync(join(vol, "templates"));
  mkdirSync(outside);
  writeFileSync(join(outside, "victim"), "original\n");
  writeFileSync(join(vol, "templates/hostname.tpl"), "{{ container.name }}\n");
});
afterAll(() => rmSync(base, { recursive: true, force: true }));

const meta = (templates: string) => writeFileSync(join(vol, "metadata.yaml"), `architecture: x86_64\ncreation_date: 1\ntemplates:\n${templates}`);
const ctx = { name: "c1", architecture: "x86_64", config: {} };

describe("applyTemplates", () => {
  it("writes templates for the trigger, creating missing files 0644 owned by container root", async () => {
    meta("  /etc/hostname:\n    when: [create]\n    template: hostname.tpl\n  /var/lib/new/file:\n    when: [create]\n    template: hostname.tpl\n  /etc/other:\n    when: [start]\n    template: hostname.tpl\n");
    const written = await applyTemplates(vol, "create", { ...ctx, rootUid: 100000, rootGid: 100000 });
    expect(written).toEqual(["/etc/hostname", "/var/lib/new/file"]);
    expect(readFileSync(join(vol, "rootfs/etc/hostname"), "utf8")).toBe("c1\n");
    const st = statSync(join(vol, "rootfs/var/lib/new/file"));
    expect([st.uid, st.gid, st.mode & 0o777]).toEqual([100000, 100000, 0o644]);
    expect(statSync(join(vol, "rootfs/var/lib")).mode & 0o777).toBe(0o755);
    expect(existsSync(join(vol, "rootfs/etc/other"))).toBe(false);
  });

  it("keeps an existing file's mode and honours create_only", async () => {
    writeFileSync(join(vol, "rootfs/etc/hostname"), "old\n");
    chmodSync(join(vol, "rootfs/etc/hostname"), 0o600);
    writeFileSync(join(vol, "rootfs/etc/keep"), "keep\n");
    meta("  /etc/hostname:\n    when: [rename]\n    template: hostname.tpl\n  /etc/keep:\n    when: [rename]\n    create_only: true\n    template: hostname.tpl\n");
    await applyTemplates(vol, "rename", ctx);
    expect(readFileSync(join(vol, "rootfs/etc/hostname"), "utf8")).toBe("c1\n");
    expect(statSync(join(vol, "rootfs/etc/hostname")).mode & 0o777).toBe(0o600);
    expect(readFileSync(join(vol, "rootfs/etc/keep"), "utf8")).toBe("keep\n");
  });

  it("resolves absolute and relative symlinks inside the rootfs, never out of it", async () => {
    symlinkSync(join(outside, "victim"), join(vol, "rootfs/etc/hostname"));
    symlinkSync("../../../../../../" + outside.slice(1), join(vol, "rootfs/etc/up"));
    symlinkSync(outside, join(vol, "rootfs/etc/dir"));
    meta("  /etc/hostname:\n    when: [create]\n    template: hostname.tpl\n  /etc/up/victim:\n    when: [create]\n    template: hostname.tpl\n  /etc/dir/victim:\n    when: [create]\n    template: hostname.tpl\n");
    await applyTemplates(vol, "create", ctx);
    expect(readFileSync(join(outside, "victim"), "utf8")).toBe("original\n");
    // Where the container would see them: the host path re-rooted at the rootfs.
    expect(readFileSync(join(vol, "rootfs", outside, "victim"), "utf8")).toBe("c1\n");
    expect(lstatSync(join(vol, "rootfs/etc/hostname")).isSymbolicLink()).toBe(true);
  });

  it("never reads a template through a symlink out of templates/", async () => {
    symlinkSync("/etc/shadow", join(vol, "templates/evil.tpl"));
    meta("  /etc/leak:\n    when: [create]\n    template: evil.tpl\n  /etc/leak2:\n    when: [create]\n    template: ../../../etc/passwd\n");
    await expect(applyTemplates(vol, "create", ctx)).rejects.toThrow(/not found|not a regular file/);
    expect(existsSync(join(vol, "rootfs/etc/leak"))).toBe(false);
  });

  it("refuses to write into a FIFO or device node", async () => {
    execFileSync("mkfifo", [join(vol, "rootfs/etc/hostname")]);
    meta("  /etc/hostname:\n    when: [create]\n    template: hostname.tpl\n");
    await expect(applyTemplates(vol, "create", ctx)).rejects.toThrow(/not a regular file/);
  });

  it("does nothing without metadata.yaml", async () => {
    expect(await applyTemplates(vol, "create", ctx)).toEqual([]);
  });

  it("resolveInRoot stops .. at the root", async () => {
    const r = await resolveInRoot(join(vol, "rootfs"), "/../../etc/../../etc/hostname");
    expect(r.host).toBe(join(vol, "rootfs/etc/hostname"));
  });
});
