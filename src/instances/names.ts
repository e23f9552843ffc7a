// LXD's instance name rules (hostname-like).
export function validateInstanceName(name: string): void {
  const prefix = "Invalid instance name: ";
  if (name.length < 1 || name.length > 63) throw new Error(prefix + "Name must be 1-63 characters long");
  if (name.startsWith("-")) throw new Error(prefix + 'Name must not start with "-" character');
  if (name.endsWith("-")) throw new Error(prefix + 'Name must not end with "-" character');
  if (/^[0-9]/.test(name)) throw new Error(prefix + "Name must not start with a number");
  if (!/^[a-zA-Z0-9-]+$/.test(name)) throw new Error(prefix + "Name can only contain alphanumeric and hyphen characters");
}

/** Expand profiles then local values, later ones winning (LXD's precedence). */
export function expand<T>(layers: Record<string, T>[]): Record<string, T> {
  return Object.assign({}, ...layers);
}
