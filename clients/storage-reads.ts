/**
 * How a client reads segment bytes from storage nodes, by the connection's `dataPath`
 * (docs/clients.md, "Data path"):
 * - validated: each read is a request the storage node checks against its grant table, then
 *   it puts the bytes into our buffer (readValidated). Works on every transport.
 * - direct: trusted clients on RDMA lanes only. The storage node hands over, once per read
 *   grant, a key to the grant's whole segment (`directKey`); reads are then one-sided RDMA
 *   gets (getDirect) the storage CPU never sees. A get completes when the bytes are in our
 *   buffer: no flush (that is for puts).
 * - auto: direct where the endpoint's lanes are RDMA and the storage node offers it, else
 *   validated (decided per storage endpoint; a grant the node will not export reads validated).
 * The caller (partition-reader.ts) decides what to read (never past the durable watermark) and
 * checks every batch's CRC whichever path brought the bytes.
 *
 * Keys: one per (storage endpoint, grant id, grant epoch), imported on first use and cached,
 * at most CLIENT_LIMITS.directKeysMax (the least recently used is released). A key is dropped
 * when its endpoint closes (the transport destroyed it), when a get with it fails (a revoked
 * grant's registration is gone: the NIC refuses, the endpoint fails) and when the storage node
 * refuses the grant; the reader then asks the broker again (retriable errors).
 * Concurrency: JS thread only; concurrent first uses of one key share one request.
 */
import { PmqError } from '../common/errors.js';
import { invariant } from '../common/invariant.js';
import { CLIENT_LIMITS } from '../common/limits.js';
import type { Logger } from '../common/log.js';
import type { Body } from '../common/wire/messages.js';
import { hasRdmaLane, type DirectKey, type Endpoint } from
  '../native/transport.js';
import type { Connection } from './connection.js';

export type DataPath = 'validated' | 'direct' | 'auto';
export const DATA_PATHS: readonly DataPath[] = ['validated', 'direct', 'auto'];

export type SegmentView = Body<'view'>['segment'][number];

/** What a client uses towards one storage node (client.dataPaths()). */
export interface DataPathInfo {
  nodeId: number;
  dataPath: 'validated' | 'direct';
  lanes: string[];
  reads: { direct: number; validated: number };
}

interface Route {
  ep: Endpoint;
  lanes: string[];
  /** Direct until the node refuses it (auto) or when the lanes are not RDMA. */
  direct: boolean;
  reads: { direct: number; validated: number };
}

interface KeyEntry { ep: Endpoint; key: Promise<DirectKey | null> }

export class StorageReads {
  private readonly routes = new Map<number, Route>();
  /** `${ep}/${grantId}/${grantEpoch}` → key (null: this grant reads validated). LRU order. */
  private readonly keys = new Map<string, KeyEntry>();

  constructor(private readonly connection: Connection, readonly dataPath: DataPath,
    private readonly log: Logger) {
    connection.transport.on('closed', this.onClosed);
  }

  /** Reads `length` bytes at `position` of the segment into dst[0, length). */
  async read(segment: SegmentView, position: number, dst: Uint8Array,
    length: number): Promise<void> {
    invariant(position + length <= segment.position, 'reads stay below the watermark',
      { position, length, watermark: segment.position });
    const ep = await this.connection.storageEndpoint(segment.nodeId);
    const route = this.route(segment.nodeId, ep);
    const address = segment.address + position;
    const key = route.direct ? await this.key(route, segment) : null;
    const transport = this.connection.transport;
    if (key === null) {
      await transport.readValidated(ep, { id: segment.grantId, epoch: segment.grantEpoch,
        key: segment.grantKey }, address, dst, 0, length);
      route.reads.validated += 1;
      return;
    }
    try {
      await transport.getDirect(key, address, dst, 0, length);
    } catch (error) {
      this.drop(keyId(ep, segment));
      throw error;
    }
    route.reads.direct += 1;
  }

  dataPaths(): DataPathInfo[] {
    return [...this.routes].map(([nodeId, route]) => ({ nodeId,
      dataPath: route.direct ? 'direct' : 'validated', lanes: route.lanes,
      reads: { ...route.reads } }));
  }

  close(): void {
    this.connection.transport.off('closed', this.onClosed);
    for (const id of [...this.keys.keys()]) this.drop(id);
    this.routes.clear();
  }

  /** The route to a storage node over `ep`; decided when the endpoint is new. */
  private route(nodeId: number, ep: Endpoint): Route {
    const known = this.routes.get(nodeId);
    if (known !== undefined && known.ep === ep) return known;
    const reads = known?.reads ?? { direct: 0, validated: 0 };
    if (this.dataPath === 'validated') {
      const route = { ep, lanes: this.connection.transport.lanes(ep), direct: false, reads };
      this.routes.set(nodeId, route);
      return route;
    }
    const lanes = this.connection.transport.lanes(ep);
    if (!hasRdmaLane(lanes) && this.dataPath === 'direct') {
      throw new PmqError('PMQ_ERR_DIRECT_UNSUPPORTED', `dataPath 'direct' needs RDMA lanes, ` +
        `but the connection to storage node ${nodeId} uses ${lanes.join('/')}: use dataPath ` +
        "'validated' or 'auto' (direct mode is for trusted clients on RDMA only)");
    }
    const route = { ep, lanes, direct: hasRdmaLane(lanes), reads };
    this.routes.set(nodeId, route);
    this.log.info({ nodeId, lanes, dataPath: route.direct ? 'direct' : 'validated' },
      'storage data path');
    return route;
  }

  /** The segment's key: cached, or asked for; null when this grant reads validated (auto). */
  private key(route: Route, segment: SegmentView): Promise<DirectKey | null> {
    const id = keyId(route.ep, segment);
    const known = this.keys.get(id);
    if (known !== undefined) {
      this.keys.delete(id);      // most recently used last
      this.keys.set(id, known);
      return known.key;
    }
    const key = this.importKey(route, segment);
    this.keys.set(id, { ep: route.ep, key });
    key.catch(() => { if (this.keys.get(id)?.key === key) this.keys.delete(id); });
    while (this.keys.size > CLIENT_LIMITS.directKeysMax) {
      this.drop(this.keys.keys().next().value!);
    }
    return key;
  }

  private async importKey(route: Route, segment: SegmentView): Promise<DirectKey | null> {
    let key: Uint8Array;
    try {
      const reply = await this.connection.requestStorage(route.ep, 'directKey',
        { grantId: segment.grantId, grantKey: segment.grantKey, grantEpoch: segment.grantEpoch },
        'directKeyIs',
        { what: `asking storage node ${segment.nodeId} for a direct key` });
      key = reply.key;
    } catch (error) {
      return this.refused(route, segment, error);
    }
    return this.connection.transport.importDirectKey(route.ep, key,
      { address: segment.address, length: segment.sizeBytes });
  }

  /** A refused directKey: auto falls back to validated; direct fails for good. */
  private refused(route: Route, segment: SegmentView, error: unknown): null {
    const code = error instanceof PmqError ? error.code : '';
    const notOffered = code === 'PMQ_ERR_DIRECT_UNSUPPORTED';
    if (!notOffered && code !== 'PMQ_ERR_DIRECT_UNALIGNED') throw error;
    if (this.dataPath === 'direct') {
      throw new PmqError(code, `dataPath 'direct': storage node ${segment.nodeId} refused a ` +
        `direct key: ${(error as Error).message}`, { cause: error });
    }
    if (notOffered) route.direct = false;  // the whole node: validated from now on
    this.log.info({ nodeId: segment.nodeId, grant: segment.grantId, code },
      'direct key refused, reading validated');
    return null;
  }

  private drop(id: string): void {
    const entry = this.keys.get(id);
    if (entry === undefined) return;
    this.keys.delete(id);
    void entry.key.then((key) => {
      if (key === null) return;
      try {
        this.connection.transport.releaseDirectKey(key);
      } catch {
        // The transport closed meanwhile: close() destroyed every key already.
      }
    }, () => undefined);
  }

  private readonly onClosed = (ep: Endpoint): void => {
    for (const [id, entry] of this.keys) if (entry.ep === ep) this.keys.delete(id);
    for (const [nodeId, route] of this.routes) {
      if (route.ep === ep) this.routes.set(nodeId, { ...route, ep: -1 as Endpoint });
    }
  };
}

function keyId(ep: Endpoint, segment: SegmentView): string {
  return `${ep}/${segment.grantId}/${segment.grantEpoch}`;
}
