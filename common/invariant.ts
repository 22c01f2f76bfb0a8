/**
 * Broken invariants: our own state is wrong. Log fatally and abort; never throw, so that no
 * catch block can turn corruption into a normal reply.
 */

type FatalSink = (fields: Record<string, unknown>, message: string) => void;

let fatalSink: FatalSink = (fields, message) => {
  process.stderr.write(`${JSON.stringify({ level: 'fatal', msg: message, ...fields })}\n`);
};

/** The process's root logger installs itself here so invariant failures reach the log. */
export function setFatalSink(sink: FatalSink): void {
  fatalSink = sink;
}

/** The default fields: a `= {}` default would be a new object on every call (issue 11). */
const NO_FIELDS: Readonly<Record<string, unknown>> = Object.freeze({});

export function invariant(
  condition: unknown,
  message: string,
  fields: Readonly<Record<string, unknown>> = NO_FIELDS,
): asserts condition {
  if (condition) return;
  try {
    fatalSink({ ...fields, invariant: message }, 'invariant broken, aborting');
  } finally {
    process.abort();
  }
}
