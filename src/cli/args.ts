// The daemon command line as parsed by main.ts.
export interface ParsedArgs {
  command: string;
  positional: string[];
  flags: Record<string, string | boolean>;
}
