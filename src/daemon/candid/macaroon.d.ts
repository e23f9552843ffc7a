// Types of the parts of js-macaroon (npm "macaroon", from the go-macaroon-bakery org) we use.
declare module "macaroon" {
  export interface Caveat {
    identifier: Uint8Array;
    location?: string;
    vid?: Uint8Array;
  }
  export interface Macaroon {
    readonly caveats: Caveat[];
    readonly location: string;
    readonly identifier: Uint8Array;
    readonly signature: Uint8Array;
    addFirstPartyCaveat(condition: Uint8Array | string): void;
    addThirdPartyCaveat(rootKey: Uint8Array, caveatId: Uint8Array | string, location: string): void;
    /** Throws unless the signature, every discharge (each used once) and every condition check out. */
    verify(rootKey: Uint8Array, check: (condition: string) => string | null, discharges?: Macaroon[]): void;
    exportJSON(): Record<string, unknown>;
    bindToRoot(rootSignature: Uint8Array): void;
  }
  export function newMacaroon(params: { identifier: Uint8Array | string; location?: string; rootKey: Uint8Array; version?: 1 | 2 }): Macaroon;
  export function importMacaroons(obj: unknown): Macaroon[];
  const _default: { newMacaroon: typeof newMacaroon; importMacaroons: typeof importMacaroons };
  export default _default;
}
