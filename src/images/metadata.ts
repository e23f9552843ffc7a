// metadata.yaml of an image: what LXD reads from it, validated as LXD validates it.
import { parseYaml } from "../shared/yaml.js";

export interface TemplateRule {
  when: string[];
  create_only: boolean;
  template: string;
  properties: Record<string, string>;
}

export interface ImageMetadata {
  architecture: string;
  creation_date: number;
  expiry_date: number;
  properties: Record<string, string>;
  templates: Record<string, TemplateRule>;
}

/** LXD's architecture names, and the aliases it accepts for them. */
const ARCHITECTURES: Record<string, string[]> = {
  i686: ["i386", "i586", "386", "x86"],
  x86_64: ["amd64"],
  armv7l: ["armel", "armhf", "arm", "armhfp", "armv7a", "armv7hl", "armv7b", "armv6l"],
  aarch64: ["arm64", "arm64v8", "armv8"],
  ppc: ["powerpc"],
  ppc64: ["powerpc64", "ppc64"],
  ppc64le: ["ppc64el"],
  s390x: [],
  mips: ["mipsel", "mipsle"],
  mips64: ["mips64el", "mips64le"],
  riscv32: [],
  riscv64: [],
};

/** Canonical architecture name, or undefined when LXD would not know it. */
export function canonicalArchitecture(name: string): string | undefined {
  for (const [canonical, aliases] of Object.entries(ARCHITECTURES)) {
    if (name === canonical || aliases.includes(name)) return canonical;
  }
  return undefined;
}

const toStringMap = (v: unknown): Record<string, string> => {
  if (v === null || v === undefined) return {};
  if (typeof v !== "object" || Array.isArray(v)) throw new Error("properties: expected a map of strings");
  const out: Record<string, string> = {};
  for (const [k, val] of Object.entries(v as Record<string, unknown>)) out[k] = val === null || val === undefined ? "" : String(val);
  return out;
};

const toInt = (v: unknown, field: string): number => {
  if (v === null || v === undefined || v === "") return 0;
  const n = typeof v === "number" ? v : Number(v);
  if (!Number.isInteger(n)) throw new Error(`${field}: expected an integer`);
  return n;
};

/** Parse metadata.yaml; errors read like LXD's. */
export function parseImageMetadata(text: string): ImageMetadata {
  let doc: unknown;
  try {
    doc = parseYaml(text) ?? {};
  } catch (e) {
    throw new Error(`yaml: ${(e as Error).message.split("\n")[0]}`);
  }
  if (typeof doc !== "object" || doc === null || Array.isArray(doc)) throw new Error("yaml: metadata.yaml is not a map");
  const d = doc as Record<string, unknown>;
  const rawArch = d.architecture === undefined || d.architecture === null ? "" : String(d.architecture);
  const architecture = canonicalArchitecture(rawArch);
  if (!architecture) throw new Error(`Architecture isn't supported: ${rawArch}`);
  const creation_date = toInt(d.creation_date, "creation_date");
  if (creation_date === 0) throw new Error("Missing creation date");
  const templates: Record<string, TemplateRule> = {};
  if (d.templates !== undefined && d.templates !== null) {
    if (typeof d.templates !== "object" || Array.isArray(d.templates)) throw new Error("templates: expected a map");
    for (const [path, raw] of Object.entries(d.templates as Record<string, unknown>)) {
      const r = (raw ?? {}) as Record<string, unknown>;
      const when = Array.isArray(r.when) ? r.when.map(String) : [];
      templates[path] = {
        when,
        create_only: r.create_only === true || r.create_only === "true",
        template: r.template === undefined || r.template === null ? "" : String(r.template),
        properties: toStringMap(r.properties),
      };
    }
  }
  return {
    architecture,
    creation_date,
    expiry_date: toInt(d.expiry_date, "expiry_date"),
    properties: toStringMap(d.properties),
    templates,
  };
}
