/**
 * UCX transport slice of the native binding (native/transport_napi.cc and
 * native/transport_data_napi.cc). Use it through native/transport.ts, which validates every
 * argument first: the native side only asserts.
 */

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

/**
 * Receives every native event after progress has returned, on the JS thread. For `place`
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
}

export interface TransportBinding {
  transportOpen(options: TransportNativeOptions, onEvent: TransportEventCallback): void;
  transportClose(): void;
  /** Returns the bound address "host:port". */
  transportListen(host: string, port: number): string;
  /** Returns the endpoint id; `connected` (or `error`) follows. */
  transportConnect(host: string, port: number): number;
  transportEndpointClose(ep: number): void;
  transportLanes(ep: number): string[];
  transportSend(ep: number, requestId: number, header: Uint8Array, payload: Uint8Array,
    offset: number, length: number): void;
  /**
   * One active message with exactly these header bytes (no prefix) and payload; mode 0 = auto,
   * 1 = eager, 2 = rendezvous. For attack/fuzz tests speaking as a hostile peer.
   */
  transportSendRaw(ep: number, requestId: number, header: Uint8Array, payload: Uint8Array,
    mode: number): void;
  transportBindSession(ep: number, session: number): void;
  transportStats(): TransportStats;
  transportAttachMemory(memory: Uint8Array): void;
  /** direction: 0 = read, 1 = write; readable = length for write grants. */
  transportGrantCreate(grantId: number, epoch: number, address: number, length: number,
    direction: number, session: number, key: number, readable: number): void;
  /** A read grant's readable prefix; only grows. */
  transportGrantSetReadable(grantId: number, readable: number): void;
  /** True when no access of the grant is in flight; otherwise `revokeDone` follows. */
  transportGrantRevoke(grantId: number): boolean;
  /** A revoked grant with nothing in flight leaves the table (true); false while in flight. */
  transportGrantForget(grantId: number): boolean;
  transportEpochRaise(epoch: number): void;
  transportWriteValidated(ep: number, requestId: number, grantId: number, epoch: number,
    grantKey: number, address: number, src: Uint8Array, offset: number, length: number): void;
  transportReadValidated(ep: number, requestId: number, grantId: number, epoch: number,
    grantKey: number, address: number, dst: Uint8Array, offset: number, length: number): void;
  /** Direct mode, storage side: the grant's key (registers the grant's range on first use). */
  transportDirectExport(ep: number, grantId: number, grantKey: number): Uint8Array;
  /** Direct mode, client side: unpacks a key for `ep`; returns its id. */
  transportDirectImport(ep: number, key: Uint8Array): number;
  transportDirectRelease(keyId: number): void;
  /** write: 1 = put buffer → remote, 0 = get remote → buffer; `sendDone` follows. */
  transportDirectTransfer(requestId: number, keyId: number, write: number, address: number,
    buffer: Uint8Array, offset: number, length: number): void;
  /** Remote completion of every put on `ep` before it; `sendDone` follows. */
  transportDirectFlush(ep: number, requestId: number): void;
}

export const TRANSPORT_EXPORTS = [
  'transportOpen', 'transportClose', 'transportListen', 'transportConnect',
  'transportEndpointClose', 'transportLanes', 'transportSend', 'transportSendRaw',
  'transportBindSession', 'transportStats',
  'transportAttachMemory', 'transportGrantCreate', 'transportGrantSetReadable',
  'transportGrantRevoke',
  'transportGrantForget', 'transportEpochRaise',
  'transportWriteValidated', 'transportReadValidated', 'transportDirectExport',
  'transportDirectImport', 'transportDirectRelease', 'transportDirectTransfer',
  'transportDirectFlush',
] as const satisfies readonly (keyof TransportBinding)[];
