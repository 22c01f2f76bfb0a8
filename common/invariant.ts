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

export function invariant(
  condition: unknown,
  message: string,
  fields: Record<string, unknown> = {},
): asserts condition {
  if (condition) return;
  try {
    fatalSink({ ...fields, invariant: message }, 'invariant broken, aborting');
  } finally {
    process.abort();
  }
}
