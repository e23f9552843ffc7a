// `instance_type` on create (`lxc launch IMAGE -t c0.5-m0.2`): LXD's custom resource form, a
// dash-separated list of c<cpus> and m<GiB> (instanceParseType). Named cloud types need LXD's
// downloaded instance-types catalogue, which nodelxd does not fetch: those are "doesn't exist".
export function parseInstanceType(value: string): Record<string, string> {
  let cpu = 0;
  let memory = 0;
  const missing = () => new Error(`Provided instance type doesn't exist: ${value}`);
  if (value === "" || value.includes(":")) throw missing();
  for (const field of value.split("-")) {
    if (field.length < 2 || (field[0] !== "c" && field[0] !== "m")) throw missing();
    const text = field.slice(1);
    if (!/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(text)) throw new Error(`Bad custom instance type: ${value}`);
    // Go parses as float32.
    const n = Math.fround(Number(text));
    if (field[0] === "c") cpu = n;
    else memory = n;
  }
  const out: Record<string, string> = {};
  if (cpu > 0) {
    let cores = Math.trunc(cpu);
    if (cores < cpu) cores++;
    const time = Math.trunc(Math.fround(Math.fround(cpu / cores) * 100));
    out["limits.cpu"] = String(cores);
    if (time < 100) out["limits.cpu.allowance"] = `${time}%`;
  }
  if (memory > 0) out["limits.memory"] = `${Math.trunc(Math.fround(memory * 1024))}MB`;
  return out;
}
