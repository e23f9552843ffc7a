// API URLs with their project: one builder (src/shared/urls.ts), escaping as LXD's api.URL does.
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative, resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { apiUrl, pathEscape, projectQuery, queryEscape, withTarget } from "../../src/shared/urls.js";

const SRC = resolve(import.meta.dirname, "../../src");
const sources = (dir: string, out: string[] = []): string[] => {
  for (const e of readdirSync(dir)) {
    const p = join(dir, e);
    if (statSync(p).isDirectory()) sources(p, out);
    else if (e.endsWith(".ts")) out.push(p);
  }
  return out;
};

describe("apiUrl", () => {
  it("leaves the default project out and names any other", () => {
    expect(apiUrl("default", "instances", "c1")).toBe("/1.0/instances/c1");
    expect(apiUrl(undefined, "instances", "c1")).toBe("/1.0/instances/c1");
    expect(apiUrl("", "instances", "c1")).toBe("/1.0/instances/c1");
    expect(apiUrl("p1", "instances", "c1", "snapshots", "s0")).toBe("/1.0/instances/c1/snapshots/s0?project=p1");
    expect(projectQuery("default")).toBe("");
    expect(projectQuery("p-2")).toBe("?project=p-2");
    expect(withTarget(apiUrl("default", "instances"), "m2")).toBe("/1.0/instances?target=m2");
    expect(withTarget(apiUrl("p1", "instances", "c1"), "m 2")).toBe("/1.0/instances/c1?project=p1&target=m+2");
  });

  it("escapes each part as Go's url.PathEscape and the project as url.QueryEscape", () => {
    // A part never spills into the next segment or the query.
    expect(apiUrl("default", "storage-pools", "p", "volumes", "custom", "a/b?c")).toBe("/1.0/storage-pools/p/volumes/custom/a%2Fb%3Fc");
    expect(pathEscape("a b;c,d")).toBe("a%20b%3Bc%2Cd");
    expect(pathEscape("x$&+:=@y")).toBe("x$&+:=@y");
    expect(pathEscape("2001:db8::1")).toBe("2001:db8::1");
    expect(pathEscape("é")).toBe("%C3%A9");
    expect(queryEscape("a b&c=d+é")).toBe("a+b%26c%3Dd%2B%C3%A9");
    expect(apiUrl("x&y", "profiles", "default")).toBe("/1.0/profiles/default?project=x%26y");
    // The project reads back whole (as filterUsedBy reads it).
    const url = apiUrl("p q&r=s", "instances", "c1");
    expect(new URLSearchParams(url.slice(url.indexOf("?") + 1)).get("project")).toBe("p q&r=s");
  });

  it("is the only place in src/ that writes a `?project=` suffix", () => {
    const handBuilt: string[] = [];
    for (const file of sources(SRC)) {
      if (file.endsWith("shared/urls.ts")) continue;
      readFileSync(file, "utf8")
        .split("\n")
        .forEach((line, i) => {
          const code = line.replace(/\/\/.*$|\/\*.*?\*\/|^\s*\*.*$/g, "");
          if (/[?&]project=/.test(code)) handBuilt.push(`${relative(SRC, file)}:${i + 1}`);
        });
    }
    expect(handBuilt).toEqual([]);
  });
});
