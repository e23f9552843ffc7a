// The exec request (api.InstanceExecPost) and the environment LXD gives a command.
import { z } from "zod";

export const execPostSchema = z.object({
  command: z.array(z.string()),
  environment: z.record(z.string()).nullish(),
  interactive: z.boolean().optional().default(false),
  "wait-for-websocket": z.boolean().optional().default(false),
  "record-output": z.boolean().optional().default(false),
  width: z.number().int().optional().default(0),
  height: z.number().int().optional().default(0),
  user: z.number().int().min(0).max(0xffffffff).optional().default(0),
  group: z.number().int().min(0).max(0xffffffff).optional().default(0),
  cwd: z.string().optional().default(""),
});
export type ExecPost = z.infer<typeof execPostSchema>;

export const DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/** Instance `environment.*` keys, then the request's, then LXD's defaults for what is unset. */
export function execEnvironment(instanceEnv: Record<string, string>, requested: Record<string, string>, user: number): Record<string, string> {
  const env: Record<string, string> = { ...instanceEnv, ...requested };
  env.PATH ??= DEFAULT_PATH;
  env.LANG ??= "C.UTF-8";
  if (user === 0) {
    env.HOME ??= "/root";
    env.USER ??= "root";
  }
  return env;
}

/** Where the command starts: the requested directory, else $HOME, else "/". */
export function execCwd(post: ExecPost, env: Record<string, string>): string {
  return post.cwd || env.HOME || "/";
}
