/**
 * UCX transport slice of the native binding (native/transport_napi.cc,
 * native/transport_data_napi.cc, native/transport_direct_napi.cc). Use it through
 * native/transport.ts, which validates every argument first: the native side only asserts.
 *
 * A process may open several transports: transportOpen returns a TransportHandle and every
 * other function takes the handle of the transport it acts on, first. Endpoint ids, request
 * ids, grant ids, direct key ids and events are per transport.
 */

/**
 * The native side's name for one open transport: a small integer, never reused in the process
 * (in the JS thread). Valid from transportOpen until transportClose; only transportStats
 * accepts a closed one.
 */
export type TransportHandle = number & { readonly __brand: 'pmq.TransportHandle' };

/** Options as the native side takes them; transport.ts fills in every default. */
export interface TransportNativeOptions {
  /** UCX_TLS-style list ('' = UCX's default, here shared memory + tcp). */
  tls: string;
  /** UCX_NET_DEVICES-style list ('' = UCX's default: every device). */
  netDevices: string;
  busyPoll: boolean;
  spinUs: number;
  keepaliveMs: number;
  peerTimeoutMs: number;
  direct: boolean;
  requestBytesMax: number;
  /** Largest two-sided message payload accepted from a peer (larger: rejected/dropped). */
  messageBytesMax: number;
  /** Eager messages' headers as views of one reused buffer (TransportOptions.sharedHeaders). */
  sharedHeaders: boolean;
  /** Eager payloads up to this size likewise (TransportOptions.sharedPayloadBytesMax). */
  sharedPayloadBytesMax: number;
  /** Print UCX's own lines about traffic (peer errors, timeouts) on stderr; off: only its
   *  lines while the transport opens and fatal ones (native/ucx_log.h). */
  ucxLogVerbose: boolean;
}

/** Event kinds, as native/transport.h's EventKind. */
export const EventKind = {
  accepted: 1,
  connected: 2,
  closed: 3,
  error: 4,
  message: 5,
  place: 6,
  sendDone: 7,
  reply: 8,
  revokeDone: 9,
} as const;

/** native/transport.h GrantResult. */
export const GRANT_RESULT = {
  ok: 0, inFlight: 1, wasRevoked: 2, wasRevokedInFlight: 3, unknown: 4, exists: 5, limit: 6,
  direction: 7, range: 8,
} as const;

/**
 * Receives every native event of one transport (the one whose open was given this callback)
 * after progress has returned, on the JS thread. For `place`
 * (a rendezvous message) `payload` is the byte count and the return value the destination (an
 * array of exactly that length) or undefined (the native side allocates one).
 */
export type TransportEventCallback = (
  kind: number, ep: number, id: number, status: number, code: string, text: string,
  header: Uint8Array | undefined, payload: Uint8Array | number | undefined,
) => Uint8Array | undefined;

export interface TransportStats {
  open: boolean;
  endpoints: number;
  pendingOps: number;
  epoch: number;
  /** Progressing on every loop turn (busyPoll) instead of sleeping. */
  busyPoll: boolean;
  /** Sleeping mode's adaptive spin (native/spin_policy.h): its bound (spinUs; 0 when busy
   *  polling), its current window, and how its spins went. */
  spinMaxUs: number;
  spinBudgetUs: number;
  spinsRewarded: number;
  spinsWasted: number;
  /** Storage side: validated reads and writes checked and served, and accesses refused. */
  readsServed: number;
  readBytesServed: number;
  writesServed: number;
  writeBytesServed: number;
  accessRefused: number;
}

export interface TransportBinding {
  transportOpen(options: TransportNativeOptions, onEvent: TransportEventCallback):
    TransportHandle;
  /** Closes that transport only; its handle names nothing afterwards. */
  transportClose(handle: TransportHandle): void;
  /** Returns the bound address "host:port". */
  transportListen(handle: TransportHandle, host: string, port: number): string;
  /** Returns the endpoint id; `connected` (or `error`) follows. */
  transportConnect(handle: TransportHandle, host: string, port: number): number;
  transportEndpointClose(handle: TransportHandle, ep: number): void;
  transportLanes(handle: TransportHandle, ep: number): string[];
  transportSend(handle: TransportHandle, ep: number, requestId: number, header: Uint8Array,
    payload: Uint8Array, offset: number, length: number): void;
  /**
   * One active message with exactly these header bytes (no prefix) and payload; mode 0 = auto,
   * 1 = eager, 2 = rendezvous. For attack/fuzz tests speaking as a hostile peer.
   */
  transportSendRaw(handle: TransportHandle, ep: number, requestId: number, header: Uint8Array,
    payload: Uint8Array, mode: number): void;
  transportBindSession(handle: TransportHandle, ep: number, session: number): void;
  /** Also for a closed handle: `open` false, zeros. */
  transportStats(handle: TransportHandle): TransportStats;
  transportAttachMemory(handle: TransportHandle, memory: Uint8Array): void;
  /** The whole mapping of a region (its native handle), attached until the transport closes. */
  transportAttachRegion(handle: TransportHandle, region: unknown): void;
  /**
   * The native persist path (native/persist_native.cc): the region (a region handle), its
   * table address, its data area [dataAddress, dataEnd), the table's entry count, and the
   * state shared with JS (segmentCount × 10 numbers, storage-node/segment-table.ts).
   */
  transportPersistConfigure(handle: TransportHandle, region: unknown, tableAddress: number,
    dataAddress: number, dataEnd: number, segmentCount: number, state: Float64Array): void;
  /** Whether `ep` speaks for the broker instance that owns the node's epoch. */
  transportSetPersistOwner(handle: TransportHandle, ep: number, owner: boolean): void;
  transportClearPersistOwners(handle: TransportHandle): void;
  /**
   * The grant table (native/grant_table.cc). Results are GrantResult codes (GRANT_RESULT).
   * direction: 0 = read, 1 = write; readable = length for write grants; segment 0xffffffff =
   * none.
   */
  transportGrantCreate(handle: TransportHandle, grantId: number, epoch: number, address: number,
    length: number, direction: number, session: number, key: number, readable: number,
    segment: number): number;
  transportGrantSetReadable(handle: TransportHandle, grantId: number, readable: number): number;
  transportGrantSetFloor(handle: TransportHandle, grantId: number, floor: number): number;
  transportGrantRevoke(handle: TransportHandle, grantId: number): number;
  transportGrantForget(handle: TransportHandle, grantId: number): number;
  /** direction 2 = both; returns the ids still in flight (revokeDone follows each), if any. */
  transportGrantsRevokeWhere(handle: TransportHandle, segment: number, direction: number,
    endMax: number, epochBelow: number): number[] | undefined;
  transportGrantsRaise(handle: TransportHandle, segment: number, direction: number,
    addressEnd: number): void;
  /** [epoch, segment, address, length, direction, session, key, readable, floor, revoked,
   *  inFlight] */
  transportGrantFind(handle: TransportHandle, grantId: number): Float64Array | undefined;
  transportSetGrantLimits(handle: TransportHandle, liveMax: number, rememberedMax: number): void;
  /** [live, remembered, ...live ids] */
  transportGrantCensus(handle: TransportHandle): number[];
  transportEpochRaise(handle: TransportHandle, epoch: number): void;
  transportWriteValidated(handle: TransportHandle, ep: number, requestId: number,
    grantId: number, epoch: number, grantKey: number, address: number, src: Uint8Array,
    offset: number, length: number): void;
  /** One write_request whose payload UCX gathers from `pieces` (an iov); length = their sum. */
  transportWriteValidatedIov(handle: TransportHandle, ep: number, requestId: number,
    grantId: number, epoch: number, grantKey: number, address: number,
    pieces: readonly Uint8Array[], unused: 0, length: number): void;
  transportReadValidated(handle: TransportHandle, ep: number, requestId: number,
    grantId: number, epoch: number, grantKey: number, address: number, dst: Uint8Array,
    offset: number, length: number): void;
  /** Direct mode, storage side: the grant's key (registers the grant's range on first use). */
  transportDirectExport(handle: TransportHandle, ep: number, grantId: number, grantKey: number):
    Uint8Array;
  /** Direct mode, client side: unpacks a key for `ep`; returns its id. */
  transportDirectImport(handle: TransportHandle, ep: number, key: Uint8Array): number;
  transportDirectRelease(handle: TransportHandle, keyId: number): void;
  /** write: 1 = put buffer → remote, 0 = get remote → buffer; `sendDone` follows. */
  transportDirectTransfer(handle: TransportHandle, requestId: number, keyId: number,
    write: number, address: number, buffer: Uint8Array, offset: number, length: number): void;
  /** Remote completion of every put on `ep` before it; `sendDone` follows. */
  transportDirectFlush(handle: TransportHandle, ep: number, requestId: number): void;
}

export const TRANSPORT_EXPORTS = [
  'transportOpen', 'transportClose', 'transportListen', 'transportConnect',
  'transportEndpointClose', 'transportLanes', 'transportSend', 'transportSendRaw',
  'transportBindSession', 'transportStats',
  'transportAttachMemory', 'transportAttachRegion', 'transportPersistConfigure',
  'transportSetPersistOwner',
  'transportClearPersistOwners', 'transportGrantCreate', 'transportGrantSetReadable',
  'transportGrantSetFloor',
  'transportGrantRevoke',
  'transportGrantForget', 'transportGrantsRevokeWhere', 'transportGrantsRaise',
  'transportGrantFind', 'transportSetGrantLimits', 'transportGrantCensus', 'transportEpochRaise',
  'transportWriteValidated', 'transportReadValidated', 'transportDirectExport',
  'transportDirectImport', 'transportDirectRelease', 'transportDirectTransfer',
  'transportDirectFlush',
  'transportWriteValidatedIov',
] as const satisfies readonly (keyof TransportBinding)[];
