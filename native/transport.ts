/**
 * The UCX transport, typed and validated (docs/native-transport.md).
 *
 * Lifecycle: `Transport.open()` creates a UCX context and worker of its own; a process may open
 * several (a storage node, a broker and clients in one process), each with its own listener,
 * endpoints, grant table and progress handles. `close()` closes that transport's endpoints,
 * listener and registrations, then its worker; the others stay open. Each Transport names its
 * native side by a handle passed first to every native call (native/binding-transport.ts).
 * Concurrency: everything runs on the JS thread; native events arrive after the worker's
 * progress has returned. A buffer handed to send/write/read stays referenced here until its
 * operation has completed. Arguments are validated here and rejected with ArgumentError; the
 * native side only asserts. Operating failures are PmqError with a stable code.
 */
import { ArgumentError, NativeError, PmqError, type ErrorCode } from '../common/errors.js';
import { invariant } from '../common/invariant.js';
import { SPIN_US_DEFAULT, SPIN_US_MAX } from '../common/limits.js';
import { EventKind, type TransportHandle, type TransportNativeOptions, type TransportStats } from
  './binding-transport.js';
import { native } from './index.js';
import { GrantTable, NO_SEGMENT } from './grant-table.js';
import { NOTHING, TransportCore, type Pending } from './transport-core.js';

export type { TransportStats } from './binding-transport.js';
export { TransportCore } from './transport-core.js';

/** An endpoint handle: a small integer, opaque to callers, meaningful to its transport only. */
export type Endpoint = number & { readonly __brand: 'pmq.Endpoint' };
/** Direct mode: an imported remote key, usable on the endpoint it was imported for. */
export type DirectKey = number & { readonly __brand: 'pmq.DirectKey' };
export type Direction = 'read' | 'write';

export interface TransportOptions {
  /** UCX_TLS-style list, e.g. 'tcp' or 'sm,tcp'. Default: UCX's default. */
  transports?: string;
  /** UCX_NET_DEVICES-style list, e.g. 'lo'. Default: UCX's default. */
  netDevices?: string;
  /**
   * Progress every loop turn while anything is open: the lowest latency, one core busy (it
   * yields to other runnable threads on turns that found nothing). Default false: sleep in
   * epoll, after an adaptive spin (spinUs).
   */
  busyPoll?: boolean;
  /**
   * Sleeping mode: the most µs to keep polling for the next message after the last activity
   * before sleeping (yielding the core to any other runnable thread meanwhile). A message
   * arriving within it costs no wake-up: neither the sender's signal nor our epoll wake (tens of
   * µs each on a VM). The spin adapts below this bound: it spins while the process is busy
   * (activity within 1 ms), about twice the gaps it catches, and shrinks to 0 once the process
   * is idle (native/spin_policy.h). Default: the environment variable PMQ_SPIN_US, else
   * SPIN_US_DEFAULT (50); 0 sleeps at once. At most 10 000. Ignored with busyPoll.
   */
  spinUs?: number;
  /** Send a keepalive after this long without sending. Default 1000. */
  keepaliveMs?: number;
  /** Declare the peer dead after this long without hearing from it. Default 5000. */
  peerTimeoutMs?: number;
  /**
   * Enable direct mode (one-sided access with exported keys, RDMA lanes only; registrations
   * without cache: IB_REG_METHODS=direct). Both sides need it. Default false.
   */
  direct?: boolean;
  /** Largest validated write/read. Default 16 MiB. */
  requestBytesMax?: number;
  /**
   * Largest payload of a two-sided message accepted from a peer: a larger one is rejected
   * (rendezvous: the sender's send fails) or dropped (eager) natively, before JS allocates
   * anything. Default 9 MiB (control messages are at most 8 MiB). At most 2^31.
   */
  messageBytesMax?: number;
  /**
   * Hand each eager message's header to deliver() as a view of one buffer that the next
   * message overwrites, instead of a new Buffer per message (issue 11: most of what a broker's
   * message events allocated). Only for a message handler that reads the header before
   * deliver() returns and keeps no reference to it (the control channel: its decoders copy).
   * Default false.
   */
  sharedHeaders?: boolean;
  /**
   * Likewise for eager payloads of at most this many bytes (0..SHARED_PAYLOAD_BYTES_LIMIT): each
   * is a view of one reused buffer, overwritten by the next message, instead of a new Buffer
   * with a finalizer (issue 11: the storage node's 32-byte `persisted` reply, one per batch at
   * the broker). For the same handlers as sharedHeaders; the control channel copies a shared
   * payload before decoding msgpack from it (its decoder hands out views into the bytes).
   * Default 0: none shared.
   */
  sharedPayloadBytesMax?: number;
  /**
   * Print UCX's own log lines about traffic (a peer gone, a timeout) on stderr. pmq reports
   * those failures itself, so they are noise at the usual levels: pass true when the process
   * logs at debug or trace. UCX's lines while the transport opens, and fatal ones, are always
   * printed; with UCX_LOG_LEVEL in the environment, all are. Never on stdout. Process-wide:
   * the transport opened last decides. Default false.
   */
  ucxLogVerbose?: boolean;
}

/** The largest sharedPayloadBytesMax (native/transport_napi.cc asserts it). */
export const SHARED_PAYLOAD_BYTES_LIMIT = 4096;

/** A grant as a client names it: id, epoch and the grant's secret key. */
export interface GrantRef { id: number; epoch: number; key: number }
export interface Grant extends GrantRef {
  address: number;
  length: number;
  direction: Direction;
  /** The session whose endpoints may use it (bindSession): ≥ 1; unbound endpoints use none. */
  session: number;
  /** Read grants: reads must lie in [address, address + readableBytes). Default: length. */
  readableBytes?: number;
  /** The segment it points into: the native persist path raises and revokes it with it. */
  segmentIndex?: number;
}

/** Numbers per segment in the persist state: transport.h's kPersistFields. */
const PERSIST_FIELDS = 10;

/** Where the native persist path finds the segment table (storage-node/native-persist.ts). */
export interface PersistLayout {
  tableAddress: number;
  dataAddress: number;
  /** The end of the data area: every segment (its range in the shared state) lies below. */
  dataEnd: number;
  segmentCount: number;
}



/** sendRaw's protocol: UCX's choice, eager or rendezvous. */
export type RawSendMode = 'auto' | 'eager' | 'rndv';
const RAW_MODES: Record<RawSendMode, number> = { auto: 0, eager: 1, rndv: 2 };

export interface MessageHandler {
  /** Rendezvous messages only: choose where `payloadBytes` land (or undefined: a new Buffer). */
  place?(ep: Endpoint, header: Uint8Array, payloadBytes: number): Uint8Array | undefined;
  deliver(ep: Endpoint, header: Uint8Array, payload: Uint8Array): void;
}

export interface TransportEvents {
  accepted: (ep: Endpoint, remoteAddress: string) => void;
  /** `code` '' = a graceful close. */
  closed: (ep: Endpoint, code: ErrorCode | '', reason: string) => void;
  error: (ep: Endpoint, error: PmqError) => void;
}

export const REQUEST_BYTES_MAX_DEFAULT = 16 * 1024 * 1024;
export const MESSAGE_BYTES_MAX_DEFAULT = 9 * 1024 * 1024;
/** Largest user header of send(); the native side drops larger ones from peers. */
export const MESSAGE_HEADER_BYTES_MAX = 4096;
const RDMA_LANES = ['rc_verbs', 'rc_mlx5', 'dc_mlx5', 'ud_verbs', 'ud_mlx5', 'rc', 'dc', 'ud'];

/** True when `lanes` (from lanes()) include an RDMA transport: what direct mode requires. */
export function hasRdmaLane(lanes: readonly string[]): boolean {
  return lanes.some((lane) => RDMA_LANES.includes(lane));
}

function isCount(value: unknown, min: number, max: number): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= min && value <= max;
}

function checkCount(name: string, value: unknown, min: number, max: number): number {
  if (!isCount(value, min, max)) {
    throw new ArgumentError(`${name} must be an integer in [${min}, ${max}], got ${String(value)}`);
  }
  return value;
}

/** Pieces of one writeValidatedIov (UCX's iov count is not limited; a sane bound is). */
export const WRITE_PIECES_MAX = 1024;

function checkBytes(name: string, value: unknown, offset: number, length: number): Uint8Array {
  if (!(value instanceof Uint8Array)) throw new ArgumentError(`${name} must be a Uint8Array`);
  // The names are built only to fail: per message, two strings each time (issue 11).
  if (!isCount(offset, 0, value.byteLength)) {
    checkCount(`${name} offset`, offset, 0, value.byteLength);
  }
  if (!isCount(length, 0, value.byteLength - offset)) {
    checkCount(`${name} length`, length, 0, value.byteLength - offset);
  }
  return value;
}

function nativeOptions(options: TransportOptions): TransportNativeOptions {
  const text = (name: string, value: unknown): string => {
    if (value === undefined) return '';
    if (typeof value !== 'string' || !/^[\w,^:.-]*$/.test(value)) {
      throw new ArgumentError(`${name} must be a comma-separated list, got ${String(value)}`);
    }
    return value;
  };
  const keepaliveMs = checkCount('keepaliveMs', options.keepaliveMs ?? 1000, 10, 3_600_000);
  const peerTimeoutMs = checkCount('peerTimeoutMs', options.peerTimeoutMs ?? 5000, 20, 3_600_000);
  if (peerTimeoutMs <= keepaliveMs) {
    throw new ArgumentError('peerTimeoutMs must exceed keepaliveMs');
  }
  return {
    tls: text('transports', options.transports),
    netDevices: text('netDevices', options.netDevices),
    busyPoll: options.busyPoll ?? false,
    spinUs: checkCount('spinUs', options.spinUs ?? spinUsFromEnvironment(), 0, SPIN_US_MAX),
    keepaliveMs,
    peerTimeoutMs,
    direct: options.direct ?? false,
    requestBytesMax: checkCount('requestBytesMax', options.requestBytesMax ??
      REQUEST_BYTES_MAX_DEFAULT, 1, 2 ** 31),
    messageBytesMax: checkCount('messageBytesMax', options.messageBytesMax ??
      MESSAGE_BYTES_MAX_DEFAULT, 0, 2 ** 31),
    sharedHeaders: options.sharedHeaders ?? false,
    sharedPayloadBytesMax: checkCount('sharedPayloadBytesMax', options.sharedPayloadBytesMax ?? 0,
      0, SHARED_PAYLOAD_BYTES_LIMIT),
    ucxLogVerbose: options.ucxLogVerbose ?? false,
  };
}

function spinUsFromEnvironment(): number {
  const text = process.env.PMQ_SPIN_US;
  if (text === undefined || text === '') return SPIN_US_DEFAULT;
  const value = Number(text);
  if (!Number.isSafeInteger(value) || value < 0 || value > SPIN_US_MAX) {
    throw new ArgumentError(`PMQ_SPIN_US must be an integer 0..${SPIN_US_MAX} (µs), got ` +
      `'${text}': unset it or fix it`);
  }
  return value;
}

export class Transport extends TransportCore {
  private readonly options: TransportNativeOptions;
  /** What the native side calls this transport: passed first to every native call. */
  private readonly handle: TransportHandle;
  readonly #grants: GrantTable;

  private constructor(options: TransportNativeOptions) {
    super();
    this.options = options;
    this.handle = native.transportOpen(options, this.onNativeEvent);
    this.#grants = new GrantTable(this.handle);
    this.grantTable = this.#grants;
  }

  /**
   * Opens a UCX context and worker of its own; independent of every other open transport of
   * the process (its events reach only this object).
   */
  static open(options: TransportOptions = {}): Transport {
    return new Transport(nativeOptions(options));
  }

  /** Listens on host:port (port 0: a free one); returns the bound address. */
  listen(host = '127.0.0.1', port = 0): { host: string; port: number } {
    this.checkOpen();
    if (typeof host !== 'string' || host.length === 0) throw new ArgumentError('host needed');
    checkCount('port', port, 0, 65535);
    if (this.listening) throw new ArgumentError('already listening');
    let bound: string;
    try {
      bound = native.transportListen(this.handle, host, port);
    } catch (error) {
      // UCS_ERR_BUSY is how UCX 1.13 reports EADDRINUSE: say it in the words users search for.
      if (error instanceof NativeError && error.reason.includes('Device is busy')) {
        throw new NativeError(error.code, `listen on ${host}:${port} failed: address in use ` +
          '(another process listens there)', error.reason);
      }
      throw error;
    }
    this.listening = true;
    const colon = bound.lastIndexOf(':');
    return { host: bound.slice(0, colon), port: Number(bound.slice(colon + 1)) };
  }

  /** Connects by socket address; resolves once the peer's transport has answered. */
  connect(host: string, port: number): Promise<Endpoint> {
    this.checkOpen();
    if (typeof host !== 'string' || host.length === 0) throw new ArgumentError('host needed');
    checkCount('port', port, 1, 65535);
    const ep = native.transportConnect(this.handle, host, port) as Endpoint;
    this.endpoints.add(ep);
    return new Promise((resolve, reject) => this.connecting.set(ep, { resolve, reject }));
  }

  /** Closes an endpoint; resolves when its `closed` event has fired. */
  closeEndpoint(ep: Endpoint): Promise<void> {
    this.checkEndpoint(ep);
    const closed = new Promise<void>((resolve) => this.closeWaiters.set(ep, resolve));
    native.transportEndpointClose(this.handle, ep);
    return closed;
  }

  /** The transports UCX chose for this endpoint, e.g. ['tcp'] or ['sysv', 'posix', 'cma']. */
  lanes(ep: Endpoint): string[] {
    this.checkEndpoint(ep);
    return native.transportLanes(this.handle, ep);
  }

  setMessageHandler(handler: MessageHandler): void {
    if (typeof handler?.deliver !== 'function') throw new ArgumentError('deliver() needed');
    this.messageHandler = handler;
  }

  /**
   * Sends header + payload[offset, offset+length); resolves when UCX is done with the bytes.
   * The header is copied before this returns (transport_am.cc): the caller may reuse it at once
   * (fixed-layout control messages are all header: common/wire/fixed.ts). The payload it may not.
   */
  send(ep: Endpoint, header: Uint8Array, payload: Uint8Array, offset = 0,
    length = payload.byteLength - offset): Promise<void> {
    this.checkEndpoint(ep);
    checkBytes('header', header, 0, header.byteLength);
    checkCount('header length', header.byteLength, 0, MESSAGE_HEADER_BYTES_MAX);
    checkBytes('payload', payload, offset, length);
    return this.startRequest(ep, { kind: 'send', buffer: payload, header }, (id) =>
      native.transportSend(this.handle, ep, id, header, payload, offset, length));
  }

  /**
   * send() for a caller that does not wait for it (a node's replies, a request whose reply is
   * what it waits for): no promise, no closure and, from a pool, no bookkeeping object per
   * message (issue 11). `failed` runs if the send fails or its endpoint closes first; pass a
   * long-lived function, not a fresh closure per call. The bytes stay referenced until UCX is
   * done with them, as with send(); throws as send() does for an endpoint that is not open.
   * `sent` (long-lived too) runs once UCX is done with the bytes of a send that succeeded: the
   * moment a caller may reuse its payload buffer. Exactly one of `failed` and `sent` runs.
   */
  post(ep: Endpoint, header: Uint8Array, payload: Uint8Array, failed: (error: Error) => void,
    sent: () => void = NOTHING): void {
    this.checkEndpoint(ep);
    checkBytes('header', header, 0, header.byteLength);
    checkCount('header length', header.byteLength, 0, MESSAGE_HEADER_BYTES_MAX);
    checkBytes('payload', payload, 0, payload.byteLength);
    const id = this.nextRequestId;
    this.nextRequestId += 1;
    this.pending.set(id, this.pooledSend(ep, header, payload, failed, sent));
    native.transportSend(this.handle, ep, id, header, payload, 0, payload.byteLength);
  }

  /**
   * Sends one active message (pmq's AM id) with exactly these header bytes — no pmq prefix,
   * no checks of what they say — and this payload, eagerly, by rendezvous or as UCX chooses.
   * The tool attack and fuzz tests use to speak as a hostile peer; nothing else should.
   * Resolves when UCX is done with the bytes (a rejected rendezvous rejects).
   */
  sendRaw(ep: Endpoint, header: Uint8Array, payload: Uint8Array,
    mode: RawSendMode = 'auto'): Promise<void> {
    this.checkEndpoint(ep);
    checkBytes('header', header, 0, header.byteLength);
    checkCount('header length', header.byteLength, 0, 65536);
    checkBytes('payload', payload, 0, payload.byteLength);
    const code = RAW_MODES[mode];
    if (code === undefined) throw new ArgumentError(`mode must be auto, eager or rndv: ${mode}`);
    return this.startRequest(ep, { kind: 'send', buffer: payload, header }, (id) =>
      native.transportSendRaw(this.handle, ep, id, header, payload, code));
  }

  /**
   * Binds `ep` to a session: from now on it may use the grants of that session, no other; an
   * unbound endpoint uses none. The caller decides who may bind (a verified ticket, or the
   * broker's proof for BROKER_SESSION).
   */
  bindSession(ep: Endpoint, session: number): void {
    this.checkEndpoint(ep);
    checkCount('session', session, 1, Number.MAX_SAFE_INTEGER);
    if (this.sessions.get(ep) === session) return;
    // A re-bind (a client that reconnected to the broker presents its new session's ticket)
    // replaces the session: the old session's grants stop working on this endpoint at once.
    native.transportBindSession(this.handle, ep, session);
    this.sessions.set(ep, session);
  }

  /** The session `ep` is bound to, or 0. */
  sessionOf(ep: Endpoint): number {
    return this.sessions.get(ep) ?? 0;
  }

  /** Storage side: the memory that grants point into (kept referenced until close). */
  attachMemory(memory: Uint8Array): void {
    this.checkOpen();
    checkBytes('memory', memory, 0, memory.byteLength);
    if (memory.byteLength === 0) throw new ArgumentError('memory must not be empty');
    if (this.memoryBytes > 0) throw new ArgumentError('memory already attached');
    native.transportAttachMemory(this.handle, memory);
    this.memoryBytes = memory.byteLength;
  }

  /**
   * Storage side: the whole mapping of `region` is the memory grants point into, reached by
   * the region's native handle (no ArrayBuffer over it, so no 4 GiB cap). The region refuses
   * to close (PMQ_ERR_REGION_BUSY) until this transport has closed.
   */
  attachRegion(region: { readonly nativeHandle: unknown; readonly sizeBytes: number }): void {
    this.checkOpen();
    if (this.memoryBytes > 0) throw new ArgumentError('memory already attached');
    checkCount('region size', region.sizeBytes, 1, Number.MAX_SAFE_INTEGER);
    native.transportAttachRegion(this.handle, region.nativeHandle);
    this.memoryBytes = region.sizeBytes;
  }

  /**
   * Storage side: lets the native path serve persist frames (docs/wire-protocol.md, "Persist
   * frames") for the region whose mapping is the attached memory. `state` is shared with the
   * native side for the transport's life (storage-node/native-persist.ts says what is in it).
   */
  configurePersist(region: unknown, layout: PersistLayout, state: Float64Array): void {
    this.checkOpen();
    if (this.memoryBytes === 0) throw new ArgumentError('attachMemory() first');
    if (this.persistRefs !== null) throw new ArgumentError('persist already configured');
    const { tableAddress, dataAddress, dataEnd, segmentCount } = layout;
    checkCount('segmentCount', segmentCount, 1, NO_SEGMENT - 1);
    checkCount('dataEnd', dataEnd, 1, this.memoryBytes);
    checkCount('dataAddress', dataAddress, 0, dataEnd - 1);
    checkCount('tableAddress', tableAddress, 0, dataAddress);
    if (!(state instanceof Float64Array) || state.length !== segmentCount * PERSIST_FIELDS) {
      throw new ArgumentError('persist state must be a Float64Array of ' +
        `${segmentCount * PERSIST_FIELDS}`);
    }
    native.transportPersistConfigure(this.handle, region, tableAddress, dataAddress,
      dataEnd, segmentCount, state);
    this.persistRefs = [region, state]; // native reads them until close
  }

  /** Storage side: whether `ep` speaks for the broker instance that owns the epoch. */
  setPersistOwner(ep: Endpoint, owner: boolean): void {
    this.checkOpen();
    native.transportSetPersistOwner(this.handle, ep, owner);
  }

  /** Storage side: no endpoint speaks for the epoch's owner (an epoch is being raised). */
  clearPersistOwners(): void {
    this.checkOpen();
    native.transportClearPersistOwners(this.handle);
  }

  /** The storage side's grant table (native): the one record of this transport's grants. */
  get grants(): GrantTable {
    this.checkOpen();
    return this.#grants;
  }

  /**
   * Creates a grant. ArgumentError for bad arguments and for an id that is or was in use
   * (ids are never reused); PMQ_ERR_GRANT_LIMIT (retriable) beyond the live-grant limit.
   */
  createGrant(grant: Grant): void {
    this.checkOpen();
    if (this.memoryBytes === 0) throw new ArgumentError('attachMemory() first');
    checkCount('grant id', grant.id, 1, Number.MAX_SAFE_INTEGER);
    checkCount('grant epoch', grant.epoch, this.epoch, Number.MAX_SAFE_INTEGER);
    checkCount('grant address', grant.address, 0, this.memoryBytes - 1);
    checkCount('grant length', grant.length, 1, this.memoryBytes - grant.address);
    if (grant.direction !== 'read' && grant.direction !== 'write') {
      throw new ArgumentError(`grant direction must be read or write, got ${grant.direction}`);
    }
    checkCount('grant session', grant.session, 1, Number.MAX_SAFE_INTEGER);
    checkCount('grant key', grant.key, 1, Number.MAX_SAFE_INTEGER);
    const readableBytes = grant.readableBytes ?? grant.length;
    checkCount('grant readableBytes', readableBytes, grant.direction === 'read' ? 0 :
      grant.length, grant.length);
    const segmentIndex = grant.segmentIndex ?? NO_SEGMENT;
    checkCount('grant segmentIndex', segmentIndex, 0, NO_SEGMENT);
    const result = this.#grants.create({ ...grant, readableBytes, segmentIndex });
    if (result === 'exists') {
      throw new ArgumentError(`grant ${grant.id} exists or existed: grant ids are never reused`);
    }
    if (result === 'limit') {
      throw new PmqError('PMQ_ERR_GRANT_LIMIT', 'too many live grants: revoke some before ' +
        'creating more', { retriable: true });
    }
  }

  /**
   * Raises a read grant's readable prefix (the bytes below the segment's durable watermark):
   * reads of [address, address + readableBytes) are allowed from now on. Only grows.
   */
  setGrantReadable(grantId: number, readableBytes: number): void {
    this.#setPrefix(grantId, 'read', readableBytes);
  }

  /**
   * Raises a write grant's floor (the bytes of its range below the segment's durable watermark):
   * writes must start at or above address + floorBytes from now on. Only grows.
   */
  setGrantWriteFloor(grantId: number, floorBytes: number): void {
    this.#setPrefix(grantId, 'write', floorBytes);
  }

  #setPrefix(grantId: number, direction: Direction, bytes: number): void {
    this.checkOpen();
    const grant = this.#grants.find(grantId);
    if (grant === undefined) throw new ArgumentError(`grant ${grantId} unknown`);
    const current = direction === 'read' ? grant.readableBytes : grant.floorBytes;
    if (grant.direction === direction) {
      checkCount(direction === 'read' ? 'readableBytes' : 'floorBytes', bytes, current,
        grant.sizeBytes);
    }
    this.#grants.setPrefix(grantId, direction, bytes);
  }

  /**
   * Refuses new requests of the grant at once; resolves when none is in flight any more.
   * ArgumentError for an unknown or an already revoked grant (GrantTable.revoke joins instead).
   */
  revokeGrant(grantId: number): Promise<void> {
    this.checkOpen();
    const revoked = this.#grants.isRevoked(grantId);
    if (revoked === undefined) throw new ArgumentError(`grant ${grantId} unknown`);
    if (revoked) throw new ArgumentError(`grant ${grantId} already revoked`);
    return this.#grants.revoke(grantId);
  }

  /**
   * Drops a revoked grant whose revocation has completed from the table, so that a node that
   * creates a grant per batch does not keep one entry per batch forever. Ids only rise: a
   * later request naming it is still told revoked, and its id cannot be created again.
   * False (nothing dropped) while an access of it is still in flight.
   */
  forgetGrant(grantId: number): boolean {
    this.checkOpen();
    if (this.#grants.waiting(grantId)) return false;
    return this.#grants.forget(grantId);
  }

  /** Raises the grant table's epoch: grants of older epochs become stale. Epochs only rise. */
  raiseEpoch(epoch: number): void {
    this.checkOpen();
    checkCount('epoch', epoch, this.epoch + 1, Number.MAX_SAFE_INTEGER);
    native.transportEpochRaise(this.handle, epoch);
    this.epoch = epoch;
    invariant(native.transportStats(this.handle).epoch === epoch, 'native epoch mismatch',
      { epoch });
  }

  /** Writes src[srcOffset, +length) at `address` of the peer's memory, checked by the peer. */
  writeValidated(ep: Endpoint, grant: GrantRef, address: number, src: Uint8Array,
    srcOffset: number, length: number): Promise<void> {
    this.checkAccess(ep, grant, address, length);
    checkBytes('src', src, srcOffset, length);
    return this.startRequest(ep, { kind: 'write', buffer: src }, (id) =>
      native.transportWriteValidated(this.handle, ep, id, grant.id, grant.epoch, grant.key,
        address, src, srcOffset, length));
  }

  /**
   * writeValidated of the pieces' concatenation in one message: UCX gathers the payload from
   * the pieces (an iov), so the peer sees one write of their total length, exactly as from
   * writeValidated. Every piece must be non-empty (at most WRITE_PIECES_MAX) and stay
   * unchanged until the promise settles. On UCX 1.13 an iov is sent through bounce buffers,
   * slower than one contiguous buffer (docs/native-transport.md, "Gathered writes").
   */
  writeValidatedIov(ep: Endpoint, grant: GrantRef, address: number,
    pieces: readonly Uint8Array[]): Promise<void> {
    if (!Array.isArray(pieces) || pieces.length === 0 || pieces.length > WRITE_PIECES_MAX) {
      throw new ArgumentError(`pieces must be an array of 1..${WRITE_PIECES_MAX} Uint8Arrays`);
    }
    let length = 0;
    for (const piece of pieces) {
      checkBytes('piece', piece, 0, 0);
      if (piece.byteLength === 0) throw new ArgumentError('a piece of a write is empty');
      length += piece.byteLength;
    }
    this.checkAccess(ep, grant, address, length);
    const kept = [...pieces]; // the caller's array may change; UCX reads these until done
    return this.startRequest(ep, { kind: 'write', buffer: kept[0]!, pieces: kept }, (id) =>
      native.transportWriteValidatedIov(this.handle, ep, id, grant.id, grant.epoch, grant.key,
        address, kept, 0, length));
  }

  /** Reads `length` bytes at `address` of the peer's memory into dst[dstOffset, +length). */
  readValidated(ep: Endpoint, grant: GrantRef, address: number, dst: Uint8Array,
    dstOffset: number, length: number): Promise<void> {
    this.checkAccess(ep, grant, address, length);
    checkBytes('dst', dst, dstOffset, length);
    return this.startRequest(ep, { kind: 'read', buffer: dst }, (id) =>
      native.transportReadValidated(this.handle, ep, id, grant.id, grant.epoch, grant.key,
        address, dst, dstOffset, length));
  }

  /**
   * Direct mode, storage side: the key to a registration of exactly the grant's range, for a
   * trusted client (docs/native-transport.md, "Direct mode"). Refused unless this transport was
   * opened with `direct: true` and the endpoint's lanes are RDMA: on tcp or shared memory a
   * key would let the client write anywhere in this process (DESIGN.md, "One-sided access must
   * be safe"), and refused for grants not page aligned (PMQ_ERR_DIRECT_UNALIGNED). The key
   * stops working when the grant is revoked, when the epoch rises above the grant's, and on
   * close. A read grant's key also allows writes (UCX cannot make read-only keys).
   */
  exportDirectKey(ep: Endpoint, grantId: number, grantKey: number): Uint8Array {
    this.checkEndpoint(ep);
    this.checkDirectEnabled();
    checkCount('grant id', grantId, 1, Number.MAX_SAFE_INTEGER);
    checkCount('grant key', grantKey, 0, Number.MAX_SAFE_INTEGER);
    // As the native check (which runs too): another session's grant, a wrong key and an
    // unknown id look the same, and before anything else is said about the grant.
    const grant = this.#grants.find(grantId);
    if (grant === undefined || grant.key !== grantKey || grant.session !== this.sessionOf(ep)) {
      throw new PmqError('PMQ_ERR_GRANT_UNKNOWN', `no grant ${grantId} for this endpoint`);
    }
    this.checkDirect(ep);
    if (grant.revoked) throw new PmqError('PMQ_ERR_GRANT_REVOKED', `grant ${grantId} revoked`);
    return native.transportDirectExport(this.handle, ep, grantId, grantKey);
  }

  /**
   * Direct mode, client side: unpacks a key exported by the storage peer at `ep`. `range` is
   * the grant as the client was told it (address and length in the peer's exposed memory):
   * putDirect/getDirect check against it, as a guard against the client's own bugs. The real
   * bound is the peer's registration, which its NIC enforces whatever `range` says. The key
   * is destroyed by releaseDirectKey(), when its endpoint closes, and on close().
   */
  importDirectKey(ep: Endpoint, key: Uint8Array, range: { address: number; length: number }):
    DirectKey {
    this.checkDirect(ep);
    checkBytes('key', key, 0, key.byteLength);
    checkCount('range address', range?.address, 0, Number.MAX_SAFE_INTEGER);
    checkCount('range length', range.length, 1, Number.MAX_SAFE_INTEGER - range.address);
    const id = native.transportDirectImport(this.handle, ep, key) as DirectKey;
    this.directKeys.set(id, { ep, address: range.address, length: range.length });
    return id;
  }

  releaseDirectKey(key: DirectKey): void {
    this.checkOpen();
    if (!this.directKeys.delete(key)) return;  // released, or gone with its endpoint
    native.transportDirectRelease(this.handle, key);
  }

  /**
   * One-sided write of src[srcOffset, +length) at `remoteAddress` of the peer's memory.
   * Resolves when src may be reused (local completion); flushDirect() for remote completion.
   * A put the peer's NIC refuses fails its endpoint: this rejects (PMQ_ERR_DIRECT_FAILED, or
   * the endpoint's close code) and the transport emits `error` for the endpoint.
   */
  putDirect(key: DirectKey, remoteAddress: number, src: Uint8Array, srcOffset: number,
    length: number): Promise<void> {
    return this.directTransfer(key, 1, remoteAddress, src, srcOffset, length);
  }

  /** One-sided read of `length` bytes at `remoteAddress` into dst; resolves once they are in. */
  getDirect(key: DirectKey, remoteAddress: number, dst: Uint8Array, dstOffset: number,
    length: number): Promise<void> {
    return this.directTransfer(key, 0, remoteAddress, dst, dstOffset, length);
  }

  /** Resolves when every put started on `ep` before it has completed at the peer. */
  flushDirect(ep: Endpoint): Promise<void> {
    this.checkEndpoint(ep);
    this.checkDirectEnabled();
    return this.startRequest(ep, { kind: 'direct', buffer: new Uint8Array(0) }, (id) =>
      native.transportDirectFlush(this.handle, ep, id));
  }

  /** Whether this transport was opened with `direct: true`. */
  get directEnabled(): boolean {
    return this.options.direct;
  }

  stats(): TransportStats {
    return native.transportStats(this.handle);
  }

  /**
   * Closes this transport's endpoints, listener and worker (no other transport's); its pending
   * requests reject with PMQ_ERR_TRANSPORT_CLOSED.
   */
  close(): void {
    if (this.isClosed) return;
    this.isClosed = true;
    native.transportClose(this.handle);
    this.failEverything(new PmqError('PMQ_ERR_TRANSPORT_CLOSED', 'transport closed'));
  }

  private checkDirectEnabled(): void {
    if (!this.options.direct) {
      throw new PmqError('PMQ_ERR_DIRECT_UNSUPPORTED', 'direct mode is not enabled in this ' +
        'process: open the transport with { direct: true }');
    }
  }

  private checkDirect(ep: Endpoint): void {
    this.checkEndpoint(ep);
    this.checkDirectEnabled();
    const lanes = this.lanes(ep);
    if (!hasRdmaLane(lanes)) {
      throw new PmqError('PMQ_ERR_DIRECT_UNSUPPORTED', 'direct mode needs RDMA lanes; this ' +
        `endpoint uses ${lanes.join('/')}: use validated mode`);
    }
  }

  private directTransfer(key: DirectKey, write: number, remoteAddress: number,
    buffer: Uint8Array, offset: number, length: number): Promise<void> {
    this.checkOpen();
    this.checkDirectEnabled();
    const entry = this.directKeys.get(key);
    if (entry === undefined) {
      throw new PmqError('PMQ_ERR_DIRECT_KEY', `direct key ${key} released or its endpoint closed`);
    }
    this.checkEndpoint(entry.ep);
    checkCount('remote address', remoteAddress, entry.address, entry.address + entry.length - 1);
    checkCount('length', length, 1, entry.address + entry.length - remoteAddress);
    checkBytes(write === 1 ? 'src' : 'dst', buffer, offset, length);
    return this.startRequest(entry.ep, { kind: 'direct', buffer }, (id) =>
      native.transportDirectTransfer(this.handle, id, key, write, remoteAddress, buffer, offset,
        length));
  }

  private checkAccess(ep: Endpoint, grant: GrantRef, address: number, length: number): void {
    this.checkEndpoint(ep);
    checkCount('grant id', grant?.id, 1, Number.MAX_SAFE_INTEGER);
    checkCount('grant epoch', grant.epoch, 0, Number.MAX_SAFE_INTEGER);
    checkCount('grant key', grant.key, 0, Number.MAX_SAFE_INTEGER);
    checkCount('address', address, 0, Number.MAX_SAFE_INTEGER);
    checkCount('length', length, 1, this.options.requestBytesMax);
  }

  private startRequest(ep: Endpoint, pending: Omit<Pending, 'ep' | 'resolve' | 'reject' |
    'sendDone' | 'reply'>, start: (id: number) => void): Promise<void> {
    const id = this.nextRequestId;
    this.nextRequestId += 1;
    const promise = new Promise<void>((resolve, reject) => {
      this.pending.set(id, { ...pending, ep, resolve, reject, sendDone: false, reply: -1 });
    });
    start(id);
    return promise;
  }
}

export { EventKind };
