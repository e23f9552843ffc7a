// YAML (the `yaml` package), loaded at first use: it costs an idle daemon 8 MiB of resident
// memory, and only backups, image metadata, templates and `lxd init` need it.
import { createRequire } from "node:module";
import type { CreateNodeOptions, DocumentOptions, ParseOptions, SchemaOptions, ToJSOptions, ToStringOptions } from "yaml";

type YamlModule = typeof import("yaml");
let loaded: YamlModule | undefined;
const yaml = (): YamlModule => (loaded ??= createRequire(import.meta.url)("yaml") as YamlModule);

export function parseYaml(src: string, options?: ParseOptions & DocumentOptions & SchemaOptions & ToJSOptions): unknown {
  return yaml().parse(src, options);
}

export function stringifyYaml(value: unknown, options?: DocumentOptions & SchemaOptions & ParseOptions & CreateNodeOptions & ToStringOptions): string {
  return yaml().stringify(value, options);
}
