// A reverter, as upstream's shared/revert: collect undo steps while making a multi-step
// change; on failure run them newest first, on success drop them.
export class Reverter {
  private steps: (() => unknown)[] = [];

  add(undo: () => unknown): void {
    this.steps.push(undo);
  }

  /** Run every undo step (errors in one step don't stop the others). */
  async fail(): Promise<void> {
    const steps = this.steps.reverse();
    this.steps = [];
    for (const step of steps) {
      try {
        await step();
      } catch {
        /* best effort: the original error is the one worth reporting */
      }
    }
  }

  success(): void {
    this.steps = [];
  }
}

/** Run `body` with a reverter: undo everything it registered if it throws. */
export async function withRevert<T>(body: (revert: Reverter) => Promise<T>): Promise<T> {
  const revert = new Reverter();
  try {
    const out = await body(revert);
    revert.success();
    return out;
  } catch (e) {
    await revert.fail();
    throw e;
  }
}
