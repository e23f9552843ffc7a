// The layers read from the tree: the import graph of src/ (type imports included, since they
// tie modules together just as much) has no circles, domain code never reaches up into the
// HTTP edge (src/api/) or the wiring (src/daemon/features/), and src/shared/ is a leaf.
import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { describe, expect, it } from "vitest";

const SRC = resolve(import.meta.dirname, "../../src");

function sources(dir: string, out: string[] = []): string[] {
  for (const e of readdirSync(dir)) {
    const p = join(dir, e);
    if (statSync(p).isDirectory()) sources(p, out);
    else if (e.endsWith(".ts") && !e.endsWith(".d.ts")) out.push(p);
  }
  return out;
}

/** file (relative to src/) → the src files it imports statically (dynamic import() is a lazy edge, not a load-order one). */
function importGraph(): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  const spec = /(?:^|\n)\s*(?:import|export)\s[^;]*?\bfrom\s*["'](\.{1,2}\/[^"']+)["']|(?:^|\n)\s*import\s*["'](\.{1,2}\/[^"']+)["']/g;
  for (const file of sources(SRC)) {
    const text = readFileSync(file, "utf8");
    const deps = [...text.matchAll(spec)].map((m) => relative(SRC, resolve(dirname(file), m[1] ?? m[2]).replace(/\.js$/, ".ts")));
    graph.set(relative(SRC, file), [...new Set(deps)]);
  }
  return graph;
}

/** Strongly connected components with more than one file (Tarjan). */
function circles(graph: Map<string, string[]>): string[][] {
  let next = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const out: string[][] = [];
  const visit = (v: string) => {
    index.set(v, next);
    low.set(v, next++);
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!graph.has(w)) continue;
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) === index.get(v)) {
      const scc: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        scc.push(w);
      } while (w !== v);
      if (scc.length > 1 || (graph.get(v) ?? []).includes(v)) out.push(scc.sort());
    }
  };
  for (const v of graph.keys()) if (!index.has(v)) visit(v);
  return out;
}

const layer = (file: string) => file.split("/")[0];
/** Above the domain: the HTTP edge, the wiring and the command line. */
const TOP = new Set(["api", "daemon", "cli", "main.ts", "bench"]);

describe("layers", () => {
  const graph = importGraph();

  it("reads the import graph (the test sees the tree)", () => {
    expect(graph.size).toBeGreaterThan(100);
    expect(graph.get("daemon/daemon.ts")).toContain("daemon/features/index.ts");
  });

  it("has no import circles", () => {
    expect(circles(graph)).toEqual([]);
  });

  it("finds a circle when there is one (the check itself works)", () => {
    const g = new Map(Object.entries({ "m1.ts": ["m2.ts"], "m2.ts": ["m3.ts"], "m3.ts": ["m1.ts"], "m4.ts": ["m1.ts"] }));
    expect(circles(g)).toEqual([["m1.ts", "m2.ts", "m3.ts"]]);
  });

  it("keeps domain code off the HTTP edge and the wiring", () => {
    const up: string[] = [];
    for (const [file, deps] of graph) {
      if (TOP.has(layer(file))) continue;
      for (const d of deps) if (layer(d) === "api" || d.startsWith("daemon/features/") || d === "daemon/daemon.ts") up.push(`${file} -> ${d}`);
    }
    expect(up).toEqual([]);
  });

  it("hands the daemon's shared object (Core) to the feature modules only: services and routes declare what they use", () => {
    const seeCore = [...graph].filter(([file, deps]) => !file.startsWith("daemon/") && deps.includes("daemon/feature.ts")).map(([file]) => file);
    expect(seeCore).toEqual([]);
  });

  it("keeps src/shared a leaf and os/ at the bottom", () => {
    const bad: string[] = [];
    for (const [file, deps] of graph) {
      if (layer(file) === "shared") bad.push(...deps.filter((d) => layer(d) !== "shared").map((d) => `${file} -> ${d}`));
      if (layer(file) === "os") bad.push(...deps.filter((d) => !["os", "shared"].includes(layer(d))).map((d) => `${file} -> ${d}`));
      if (layer(file) === "db") bad.push(...deps.filter((d) => TOP.has(layer(d))).map((d) => `${file} -> ${d}`));
    }
    expect(bad).toEqual([]);
  });
});
