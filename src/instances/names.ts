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

// Words for generated names ("adjective-animal", as LXD names an instance created without one).
const ADJECTIVES = [
  "able", "alert", "amazed", "amused", "brave", "bright", "busy", "calm", "careful", "charmed", "clever", "cool", "cosmic", "crisp", "curious",
  "daring", "eager", "easy", "epic", "fair", "fancy", "fast", "fine", "fluent", "fond", "free", "fresh", "gentle", "glad", "golden", "good",
  "grand", "happy", "hardy", "helped", "honest", "humble", "ideal", "jolly", "keen", "kind", "known", "large", "light", "lively", "loved",
  "loyal", "lucky", "magic", "merry", "mighty", "modern", "neat", "nice", "noble", "open", "patient", "perfect", "pleased", "polite", "proud",
  "quick", "quiet", "rapid", "ready", "regal", "rested", "right", "robust", "safe", "sharp", "shining", "simple", "smart", "smooth", "solid",
  "steady", "sunny", "super", "sure", "swift", "tender", "tidy", "top", "true", "trusty", "upright", "valid", "vital", "warm", "wise", "witty",
];
const ANIMALS = [
  "ant", "ape", "badger", "bat", "bear", "beaver", "bee", "bison", "boar", "bobcat", "buck", "bull", "camel", "cat", "cheetah", "chicken",
  "cicada", "clam", "cobra", "cod", "colt", "condor", "coral", "cougar", "cow", "crab", "crane", "cricket", "crow", "deer", "dingo", "dodo",
  "dog", "dolphin", "donkey", "dove", "duck", "eagle", "eel", "elk", "emu", "falcon", "ferret", "finch", "fish", "flamingo", "fox", "frog",
  "gazelle", "gecko", "gibbon", "goat", "goose", "gopher", "gull", "hare", "hawk", "hen", "heron", "horse", "hound", "ibex", "impala",
  "jackal", "jay", "kid", "kit", "kite", "koala", "lamb", "lark", "lemur", "leopard", "lion", "lizard", "llama", "lynx", "macaw", "mako",
  "marlin", "mink", "mole", "moose", "mouse", "mule", "newt", "orca", "oriole", "osprey", "otter", "owl", "ox", "panda", "panther", "parrot",
  "pelican", "penguin", "pig", "pika", "pony", "puma", "quail", "rabbit", "ram", "raven", "robin", "salmon", "seal", "shark", "sheep",
  "skink", "sloth", "snail", "snake", "sparrow", "squid", "stork", "swan", "tapir", "tiger", "toad", "trout", "turkey", "turtle", "viper",
  "vulture", "walrus", "wasp", "whale", "wolf", "wombat", "worm", "yak", "zebra",
];

/** A fresh "adjective-animal" name that `taken` does not know; LXD's error after 100 tries. */
export function generateInstanceName(taken: (name: string) => boolean, random: () => number = Math.random): string {
  const pick = (words: string[]) => words[Math.floor(random() * words.length)];
  for (let i = 0; i < 100; i++) {
    const name = `${pick(ADJECTIVES)}-${pick(ANIMALS)}`;
    if (!taken(name)) return name;
  }
  throw new Error("Couldn't generate a new unique name after 100 tries");
}
