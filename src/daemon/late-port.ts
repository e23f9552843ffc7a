// The one late-binding mechanism of the wiring. Features are built in order (features/index.ts),
// but a few ports are needed before their provider exists: storage asks instances what uses a
// volume while instances need storage to create one; profiles, projects and networks ask each
// other. The daemon hands such a consumer a stand-in for the port and binds the provider to it
// right after building it, before any feature starts; a call before that is a wiring bug.

export interface LatePort<T extends object> {
  /** The stand-in to hand to consumers built before the provider. */
  readonly port: T;
  /** Bind the provider (once). */
  bind(impl: T): T;
}

export function latePort<T extends object>(name: string): LatePort<T> {
  let impl: T | undefined;
  const target = (): T => {
    if (!impl) throw new Error(`The ${name} port was used before the daemon wired it`);
    return impl;
  };
  const port = new Proxy({} as T, {
    get(_stub, key) {
      const t = target();
      const value: unknown = Reflect.get(t, key, t);
      return typeof value === "function" ? value.bind(t) : value;
    },
    has: (_stub, key) => Reflect.has(target(), key),
  });
  return {
    port,
    bind(provider: T): T {
      if (impl) throw new Error(`The ${name} port is wired twice`);
      impl = provider;
      return provider;
    },
  };
}
