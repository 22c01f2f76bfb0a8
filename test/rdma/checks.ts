/**
 * The VM suites' tiny harness (no tap inside the VM: its startup alone takes minutes under an
 * emulated CPU): `check` prints `ok N - ...` / `not ok N - ...`, `finish` prints the plan and a
 * last line `<suite>: P passed, F failed` and exits 1 on any failure. Every check is bounded.
 */
let checkNumber = 0;
let failed = 0;

export function say(line: string): void {
  process.stdout.write(`${line}\n`);
}

export function within<T>(ms: number, what: string, promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

export async function check(what: string, body: () => Promise<void>,
  timeoutMs = 120_000): Promise<void> {
  checkNumber += 1;
  const started = Date.now();
  try {
    await within(timeoutMs, what, body());
    say(`ok ${checkNumber} - ${what} # ${Date.now() - started} ms`);
  } catch (error) {
    failed += 1;
    say(`not ok ${checkNumber} - ${what} # ${String(error)}`);
  }
}

export function expect(condition: boolean, what: string): void {
  if (!condition) throw new Error(what);
}

/** Runs the suite's main, then prints the summary and exits (after `cleanUp`). */
export function runSuite(name: string, main: () => Promise<void>, cleanUp: () => void): void {
  main().catch((error: unknown) => {
    failed += 1;
    say(`not ok ${checkNumber + 1} - suite aborted # ${String(error)}`);
  }).finally(() => {
    cleanUp();
    say(`1..${checkNumber}`);
    say(`${name}: ${checkNumber - failed} passed, ${failed} failed`);
    process.exit(failed === 0 ? 0 : 1);
  });
}
