/**
 * Lines from a byte stream, in groups, without holding the stream in memory: the stream is read
 * on demand (for-await pulls one chunk at a time, so a slow consumer of the groups pauses the
 * reading, and a pipe writer waits), lines are views into the chunk they came from (no copy
 * unless a line spans chunks), and a line longer than `lineBytesMax` is an error rather than
 * an unbounded buffer. A line is the bytes before '\n'; a last line without '\n' counts.
 */
import type { Readable } from 'node:stream';

import { PmqError } from '../common/errors.js';

export interface LineGroup {
  lines: Buffer[];
  /** Bytes of the lines (without the newlines). */
  sizeBytes: number;
  /** 1-based number of the first line of the group in the input. */
  firstLineNumber: number;
}

export interface LineOptions {
  lineBytesMax: number;
  /** A group is yielded once it holds this many bytes... */
  groupBytesMax: number;
  /** ...or this many lines, or when the input has nothing more right now. */
  groupLinesMax: number;
}

const NEWLINE = 0x0a;

function tooLong(lineNumber: number, lineBytesMax: number): PmqError {
  return new PmqError('PMQ_ERR_RECORD_TOO_LARGE', `input line ${lineNumber} is longer than ` +
    `${lineBytesMax} bytes: split it, or send it with --value`);
}

/** Yields the lines of `input` in groups bounded by bytes and count. */
export async function* readLineGroups(input: Readable, opts: LineOptions):
  AsyncGenerator<LineGroup> {
  let carry: Buffer | null = null;  // the unfinished line of the previous chunk
  let group: LineGroup = { lines: [], sizeBytes: 0, firstLineNumber: 1 };
  let lineNumber = 1;
  const push = (line: Buffer): LineGroup | null => {
    if (line.byteLength > opts.lineBytesMax) throw tooLong(lineNumber, opts.lineBytesMax);
    group.lines.push(line);
    group.sizeBytes += line.byteLength;
    lineNumber += 1;
    if (group.sizeBytes < opts.groupBytesMax && group.lines.length < opts.groupLinesMax) {
      return null;
    }
    const full = group;
    group = { lines: [], sizeBytes: 0, firstLineNumber: lineNumber };
    return full;
  };
  for await (const chunk of input as AsyncIterable<Buffer>) {
    let start = 0;
    for (let end = chunk.indexOf(NEWLINE); end >= 0; end = chunk.indexOf(NEWLINE, start)) {
      let line = chunk.subarray(start, end);
      if (carry !== null) {
        line = Buffer.concat([carry, line]);
        carry = null;
      }
      start = end + 1;
      const full = push(line);
      if (full !== null) yield full;
    }
    if (start < chunk.byteLength) {
      const rest = chunk.subarray(start);
      carry = carry === null ? rest : Buffer.concat([carry, rest]);
      if (carry.byteLength > opts.lineBytesMax) throw tooLong(lineNumber, opts.lineBytesMax);
    }
    // Nothing more in this chunk: hand over what we have rather than wait for the next one.
    if (group.lines.length > 0 && input.readableLength === 0) {
      const full = group;
      group = { lines: [], sizeBytes: 0, firstLineNumber: lineNumber };
      yield full;
    }
  }
  const last = carry === null ? null : push(carry);
  if (last !== null) yield last;
  if (group.lines.length > 0) yield group;
}
