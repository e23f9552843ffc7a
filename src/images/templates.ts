// Image templates (metadata.yaml `templates:`): which apply for a trigger, and writing
// their rendered output into an instance's rootfs as LXD does — but never through a
// symlink that leads out of the rootfs: paths are resolved inside the rootfs the way the
// container itself would see them (absolute links restart at the rootfs, `..` stops there).
import { constants } from "node:fs";
import { chown, lstat, mkdir, open, readFile, readlink } from "node:fs/promises";
import { join } from "node:path";
import { parseYaml } from "../shared/yaml.js";
import { render, type Context, type Value } from "./pongo.js";
import type { TemplateRule } from "./metadata.js";

export type TemplateTrigger = "create" | "copy" | "start" | "rename";

export interface TemplateContext {
  /** Instance name. */
  name: string;
  architecture: string;
  ephemeral?: boolean;
  privileged?: boolean;
  /** Expanded instance config. */
  config: Record<string, string>;
  /** Expanded devices. */
  devices?: Record<string, Record<string, string>>;
  /** Host uid/gid that container root maps to (owner of files and directories we create). */
  rootUid?: number;
  rootGid?: number;
}

/** The `templates:` rules of a metadata.yaml, read leniently (instances may have edited it). */
export function templateRules(metadataYaml: string): Record<string, TemplateRule> {
  const doc = parseYaml(metadataYaml) as { templates?: Record<string, Record<string, unknown> | null> } | null;
  const out: Record<string, TemplateRule> = {};
  for (const [path, raw] of Object.entries(doc?.templates ?? {})) {
    const r = raw ?? {};
    out[path] = {
      when: Array.isArray(r.when) ? r.when.map(String) : [],
      create_only: r.create_only === true,
      template: r.template === undefined || r.template === null ? "" : String(r.template),
      properties: Object.fromEntries(Object.entries((r.properties as Record<string, unknown>) ?? {}).map(([k, v]) => [k, String(v ?? "")])),
    };
  }
  return out;
}

/** Rules that fire for `trigger`, in path order. */
export function templatesFor(rules: Record<string, TemplateRule>, trigger: TemplateTrigger): [string, TemplateRule][] {
  return Object.entries(rules)
    .filter(([, r]) => r.when.includes(trigger))
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

export function renderTemplate(source: string, trigger: TemplateTrigger, path: string, rule: TemplateRule, ctx: TemplateContext): string {
  const instance: Record<string, string> = {
    name: ctx.name,
    type: "container",
    architecture: ctx.architecture,
    ephemeral: ctx.ephemeral ? "true" : "false",
    privileged: ctx.privileged ? "true" : "false",
  };
  const vars: Context = {
    trigger,
    path,
    container: instance,
    instance,
    config: ctx.config,
    devices: (ctx.devices ?? {}) as Value,
    properties: rule.properties,
    config_get: (key: Value, fallback: Value) => {
      const k = String(key ?? "");
      return Object.prototype.hasOwnProperty.call(ctx.config, k) ? ctx.config[k].replace(/[\r\n]+$/, "") : fallback;
    },
  };
  return render(source, vars);
}

const MAX_LINKS = 40;

/**
 * Resolve `path` inside `root` as a process chrooted at `root` would, without following
 * anything out of it. Returns the host path and whether it exists.
 */
export async function resolveInRoot(root: string, path: string): Promise<{ host: string; parts: string[]; exists: boolean }> {
  const queue = path.split("/").filter((p) => p !== "" && p !== ".");
  const parts: string[] = [];
  let hops = 0;
  let missing = false;
  while (queue.length > 0) {
    const p = queue.shift()!;
    if (p === "..") {
      parts.pop();
      continue;
    }
    if (missing) {
      parts.push(p);
      continue;
    }
    const candidate = join(root, ...parts, p);
    const st = await lstat(candidate).catch((e: NodeJS.ErrnoException) => {
      if (e.code === "ENOENT") return undefined;
      throw e;
    });
    if (!st) {
      missing = true;
      parts.push(p);
      continue;
    }
    if (st.isSymbolicLink()) {
      if (++hops > MAX_LINKS) throw new Error(`Too many levels of symbolic links resolving ${path}`);
      const target = await readlink(candidate);
      if (target.startsWith("/")) parts.length = 0;
      queue.unshift(...target.split("/").filter((x) => x !== "" && x !== "."));
      continue;
    }
    if (queue.length > 0 && !st.isDirectory()) throw new Error(`${join("/", ...parts, p)} is not a directory`);
    parts.push(p);
  }
  return { host: join(root, ...parts), parts, exists: !missing };
}

/**
 * Apply the image templates of the instance volume at `volumeDir` (metadata.yaml,
 * templates/, rootfs/) for `trigger`. Returns the container paths written.
 */
export async function applyTemplates(volumeDir: string, trigger: TemplateTrigger, ctx: TemplateContext): Promise<string[]> {
  const metaPath = join(volumeDir, "metadata.yaml");
  const metaStat = await lstat(metaPath).catch(() => undefined);
  if (!metaStat?.isFile()) return [];
  const rules = templateRules(await readFile(metaPath, "utf8"));
  const rootfs = join(volumeDir, "rootfs");
  const templatesDir = join(volumeDir, "templates");
  const uid = ctx.rootUid ?? 0;
  const gid = ctx.rootGid ?? 0;
  const written: string[] = [];
  for (const [path, rule] of templatesFor(rules, trigger)) {
    const dest = await resolveInRoot(rootfs, path);
    if (dest.parts.length === 0) throw new Error(`Template target ${path} is the rootfs itself`);
    if (dest.exists && rule.create_only) continue;
    const source = await readTemplateSource(templatesDir, rule.template);
    const content = renderTemplate(source, trigger, path, rule, ctx);

    // Create missing parent directories one by one (owned by container root, 0755).
    for (let i = 1; i < dest.parts.length; i++) {
      const dir = join(rootfs, ...dest.parts.slice(0, i));
      const st = await lstat(dir).catch(() => undefined);
      if (st?.isDirectory()) continue;
      if (st) throw new Error(`${join("/", ...dest.parts.slice(0, i))} is not a directory`);
      await mkdir(dir, { mode: 0o755 });
      await chown(dir, uid, gid);
    }
    // Only ever a regular file: opening a device node or FIFO for writing must not happen,
    // so check before opening (O_NONBLOCK, no O_TRUNC) and again on the open descriptor.
    const before = dest.exists ? await lstat(dest.host) : undefined;
    if (before && !before.isFile()) throw new Error(`Template target ${path} is not a regular file`);
    const flags = constants.O_WRONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK | (dest.exists ? 0 : constants.O_CREAT | constants.O_EXCL);
    const fh = await open(dest.host, flags, 0o644);
    try {
      const st = await fh.stat();
      if (!st.isFile() || (before && st.ino !== before.ino)) throw new Error(`Template target ${path} is not a regular file`);
      if (!dest.exists) {
        await fh.chown(uid, gid);
        await fh.chmod(0o644);
      }
      await fh.truncate(0);
      await fh.write(content, 0);
    } finally {
      await fh.close();
    }
    written.push(path);
  }
  return written;
}

async function readTemplateSource(templatesDir: string, name: string): Promise<string> {
  if (name === "") throw new Error("Template rule has no template file");
  const src = await resolveInRoot(templatesDir, name);
  if (!src.exists) throw new Error(`Template file ${name} not found`);
  if (!(await lstat(src.host)).isFile()) throw new Error(`Template file ${name} is not a regular file`);
  const fh = await open(src.host, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  try {
    if (!(await fh.stat()).isFile()) throw new Error(`Template file ${name} is not a regular file`);
    return await fh.readFile("utf8");
  } finally {
    await fh.close();
  }
}
