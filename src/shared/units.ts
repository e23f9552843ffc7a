// Byte sizes as LXD 5.0.2 reads them (shared/units.ParseByteSizeString): the one size parser
// for instance, device, storage, project and server keys.

const BYTE_UNITS: Record<string, bigint> = {
  "": 1n,
  B: 1n,
  " bytes": 1n,
  kB: 10n ** 3n,
  MB: 10n ** 6n,
  GB: 10n ** 9n,
  TB: 10n ** 12n,
  PB: 10n ** 15n,
  EB: 10n ** 18n,
  KiB: 2n ** 10n,
  MiB: 2n ** 20n,
  GiB: 2n ** 30n,
  TiB: 2n ** 40n,
  PiB: 2n ** 50n,
  EiB: 2n ** 60n,
};

const INT64_MAX = 2n ** 63n - 1n;

/**
 * "" → 0; decimal digits followed by one of LXD's suffixes (B, kB…EB, KiB…EiB, " bytes" or
 * none). No fractions, no other spacing, no lower-case forms: LXD refuses them too, with these
 * messages ("Invalid value: X", "Invalid integer: X", "Overflow multiplying A with B").
 */
export function parseByteSize(input: string): number {
  if (input === "") return 0;
  const digits = /^[0-9]*/.exec(input)![0];
  if (digits === "") throw new Error(`Invalid value: ${input}`);
  const suffix = input.slice(digits.length);
  const value = BigInt(digits);
  if (value > INT64_MAX) throw new Error(`Invalid integer: ${input}`);
  const mult = BYTE_UNITS[suffix];
  if (mult === undefined) throw new Error(`Invalid value: ${input}`);
  const result = value * mult;
  if (result > INT64_MAX) throw new Error(`Overflow multiplying ${value} with ${mult}`);
  return Number(result);
}
