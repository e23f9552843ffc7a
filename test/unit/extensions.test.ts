import { existsSync, readFileSync } from "node:fs";
import { resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { apiExtensions } from "../../src/api/extensions.js";

const UPSTREAM = resolve(import.meta.dirname, "../../../shared/lxd-5.0.2/api-extensions.txt");

describe("api extensions", () => {
  it("lists each extension once", () => {
    expect(new Set(apiExtensions).size).toBe(apiExtensions.length);
  });
  it("includes those the stock client needs for what we serve", () => {
    for (const name of ["instances", "console", "network", "storage", "resources", "etag", "patch", "instance_nic_network"]) expect(apiExtensions).toContain(name);
  });
  it.skipIf(!existsSync(UPSTREAM))("names only extensions LXD 5.0.2 has", () => {
    const upstream = new Set(readFileSync(UPSTREAM, "utf8").split("\n").filter(Boolean));
    expect(apiExtensions.filter((e) => !upstream.has(e))).toEqual([]);
  });
});
