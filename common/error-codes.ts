/**
 * The catalogue of pmq's error codes: every `code` a PmqError (common/errors.ts) may carry, in
 * TypeScript and in native code alike. `ErrorCode` is its keys, so a misspelled code fails the
 * typecheck; test/unit/error-codes.test.ts checks that docs/error-codes.md documents exactly
 * these and that no `PMQ_ERR_…` spelled anywhere in the sources is missing here.
 *
 * `retriable` is the default of PmqError's `retriable` for the code: true when the same request
 * may succeed later unchanged (a peer restarting, a timeout, something busy or full for now).
 * A site that knows better passes `retriable` itself. `meaning` is one line; the documentation
 * says more, and what to do.
 */

export interface ErrorCodeInfo {
  readonly retriable: boolean;
  readonly meaning: string;
}

const retriable = (meaning: string): ErrorCodeInfo => ({ retriable: true, meaning });
const fatal = (meaning: string): ErrorCodeInfo => ({ retriable: false, meaning });

export const ERROR_CODES = {
  // Caller and build.
  PMQ_ERR_ARGUMENT: fatal('an argument can never work (wrong type, out of range, not aligned)'),
  PMQ_ERR_NATIVE_MISSING: fatal('the native addon is not built or cannot load its libraries'),
  PMQ_ERR_NATIVE_ABI: fatal('the native addon was built from other sources than the TS'),

  // Region files (native/region.ts).
  PMQ_ERR_REGION_LOCKED: fatal('another process or handle holds the region'),
  PMQ_ERR_REGION_SIZE_MISMATCH: fatal('the file is not of the size asked for, or of no page ' +
    'multiple'),
  PMQ_ERR_REGION_NO_DIR: fatal('the region\'s directory is missing'),
  PMQ_ERR_REGION_NO_SPACE: fatal('the device cannot hold a region of that size'),
  PMQ_ERR_REGION_TOO_LARGE: fatal('the size asked for exceeds the largest region'),
  PMQ_ERR_REGION_EXISTS: fatal('create-new of a file that exists'),
  PMQ_ERR_REGION_NOT_FOUND: fatal('open of a file that does not exist'),
  PMQ_ERR_REGION_IS_DIR: fatal('the region path names a directory'),
  PMQ_ERR_REGION_OPEN: fatal('open, lock, stat or allocate of the region file failed'),
  PMQ_ERR_REGION_MAP: fatal('libpmem2 could not map or unmap the file'),
  PMQ_ERR_REGION_PERSIST: fatal('msync failed: the range may not be durable'),
  PMQ_ERR_REGION_CLOSED: fatal('the region was closed'),
  PMQ_ERR_REGION_BUSY: fatal('close while persistAsync calls are in flight or a transport is ' +
    'attached'),
  PMQ_ERR_REGION_PREFAULT: fatal('prefaulting the region\'s pages failed'),
  PMQ_ERR_REGION_EXTERNAL_BUFFER: fatal('the runtime cannot expose a range of the region as ' +
    'an ArrayBuffer'),

  // Record batches (common/record-batch/).
  PMQ_ERR_BATCH_TRUNCATED: fatal('fewer bytes than the batch header or its length needs'),
  PMQ_ERR_BATCH_MAGIC: fatal('not a Kafka RecordBatch v2 (magic byte)'),
  PMQ_ERR_BATCH_CRC: fatal('the batch CRC32C does not match'),
  PMQ_ERR_BATCH_COMPRESSION: fatal('the batch is compressed'),
  PMQ_ERR_BATCH_CORRUPT: fatal('the CRC matches but the batch structure is wrong'),

  // Region store (storage-node/region-store.ts).
  PMQ_ERR_REGION_NOT_FORMATTED: fatal('both superblock copies are blank'),
  PMQ_ERR_REGION_FORMATTED: fatal('format of a region that holds a superblock'),
  PMQ_ERR_REGION_GEOMETRY: fatal('segment size or region size cannot make a region'),
  PMQ_ERR_REGION_CORRUPT: fatal('the region\'s metadata or a committed batch fails its checks'),
  PMQ_ERR_REGION_VERSION: fatal('a layout version this build cannot read'),
  PMQ_ERR_REGION_FULL: fatal('no room for a segment: free some (delete topics, retention) first'),
  PMQ_ERR_SEGMENT_UNKNOWN: fatal('segment index outside the table'),
  PMQ_ERR_SEGMENT_STATE: fatal('the segment is not in a state for this request'),
  PMQ_ERR_SEGMENT_BUSY: retriable('another update of the segment is in flight'),
  PMQ_ERR_SEGMENT_EXISTS: fatal('the chain place already has a live segment'),
  PMQ_ERR_WATERMARK_BACKWARD: fatal('the watermark is below the durable one'),
  PMQ_ERR_WATERMARK_BEYOND_SEGMENT: fatal('the watermark is past the segment\'s end'),
  PMQ_ERR_WATERMARK_INVALID: fatal('offsetLast does not fit position and baseOffset'),
  PMQ_ERR_EPOCH_STALE: fatal('the request\'s epoch is below the node\'s: its sender was fenced'),
  PMQ_ERR_EPOCH_FUTURE: fatal('the request\'s epoch is above the node\'s'),
  PMQ_ERR_EPOCH_BUSY: retriable('an epoch raise is in flight'),

  // Sequencer (broker-node/sequencer.ts).
  PMQ_ERR_RECORD_TOO_LARGE: fatal('the batch is larger than a segment (or the client\'s limit)'),
  PMQ_ERR_LEASE_INVALID: fatal('lease or append sizes no RecordBatch has, a batch outside its ' +
    'lease, or a bad sequence'),
  PMQ_ERR_BUSY: retriable('the partition or segment has its maximum of requests in flight'),
  PMQ_ERR_LEASE_EXPIRED: retriable('append to a closed lease (or an unknown batch): lease again'),
  PMQ_ERR_CHAIN_INVALID: fatal('the segment tables read at recovery form no chain'),
  PMQ_ERR_OFFSET_OUT_OF_RANGE: fatal('an offset outside what the partition holds'),

  // Storage node's own (storage-node/).
  PMQ_ERR_GRANT_EXISTS: fatal('grantCreate with an id used before (ids must rise)'),
  PMQ_ERR_GRANT_UNKNOWN: fatal('no such grant (or not for this session, or a wrong key)'),
  PMQ_ERR_GRANT_RANGE: fatal('the grant\'s range is empty, leaves the segment or is durable'),
  PMQ_ERR_GRANT_INVALID: fatal('grant id 0'),
  PMQ_ERR_GRANT_LIMIT: retriable('the node holds its maximum of live grants'),
  PMQ_ERR_AUTH: fatal('not authenticated: cluster key or SCRAM proof missing or wrong'),
  PMQ_ERR_EPOCH_RANGE: fatal('an epoch too far above the node\'s, or above EPOCH_MAX'),
  PMQ_ERR_DIRECT_UNSUPPORTED: fatal('direct mode is not enabled or not on RDMA lanes'),
  PMQ_ERR_DIRECT_UNALIGNED: fatal('a direct key for a grant not on page boundaries'),

  // Broker (broker-node/).
  PMQ_ERR_UNKNOWN_TOPIC: fatal('the topic does not exist'),
  PMQ_ERR_PARTITION_RANGE: fatal('the partition is outside the topic\'s'),
  PMQ_ERR_TOPIC_EXISTS: fatal('topicCreate of a topic that exists'),
  PMQ_ERR_OUT_OF_ORDER_SEQUENCE: fatal('an idempotent append out of the producer\'s sequence'),
  PMQ_ERR_PARTITION_UNAVAILABLE: fatal('the partition\'s segment chain did not restore'),
  PMQ_ERR_STORAGE_UNAVAILABLE: retriable('the storage node needed is not connected'),
  PMQ_ERR_FENCED: retriable('a newer broker owns the cluster (retriable at that broker)'),
  PMQ_ERR_STORAGE_DUPLICATE: fatal('two storage addresses are regions with the same node id'),
  PMQ_ERR_DATA_DIR_LOCKED: fatal('another broker holds the data directory'),
  PMQ_ERR_TOPIC_QUARANTINED: fatal('segments of an earlier topic of that name are quarantined'),
  PMQ_ERR_NOT_QUARANTINED: fatal('quarantineFree of a segment that is not quarantined'),
  PMQ_ERR_LIMIT: fatal('a broker table or the cluster metadata is full'),
  PMQ_ERR_METADATA_CORRUPT: fatal('metadata (file or log value) fails its checks'),
  PMQ_ERR_METADATA_VERSION: fatal('metadata of another format version'),
  PMQ_ERR_METADATA_FULL: retriable('a metadata change does not fit the log\'s segment'),
  PMQ_ERR_METADATA_SNAPSHOT: fatal('a metadata change into an empty metadata log'),
  PMQ_ERR_CLUSTER_KEY: fatal('no usable cluster key file'),
  PMQ_ERR_METADATA_IO: fatal('the data directory cannot be created, read or written'),

  // Consumer groups (broker-node/group-coordinator.ts).
  PMQ_ERR_REBALANCE_IN_PROGRESS: retriable('the group is rebalancing: join it again'),
  PMQ_ERR_UNKNOWN_MEMBER: fatal('the member id is not one of the group (expired, left, ' +
    'replaced by a static member): join with no id'),
  PMQ_ERR_GENERATION_STALE: fatal('a generation that is not the group\'s current one (a ' +
    'zombie member)'),
  PMQ_ERR_NOT_ASSIGNED: fatal('a member\'s commit for a partition it does not own'),
  PMQ_ERR_GROUP_NOT_EMPTY: fatal('the group has active members'),
  PMQ_ERR_UNKNOWN_GROUP: fatal('the group has neither members nor committed offsets'),
  PMQ_ERR_ASSIGNOR: fatal('no assignor every member supports, or an unknown one'),

  // Sessions, authentication and ACLs.
  PMQ_ERR_DENIED: fatal('an ACL or the session does not allow the request'),
  PMQ_ERR_AUTH_FILE: fatal('the auth file cannot be read or fails its checks'),
  PMQ_ERR_TICKET_INVALID: fatal('the session ticket is not one of this cluster'),
  PMQ_ERR_TICKET_EXPIRED: retriable('the session ticket expired'),
  PMQ_ERR_TICKET_STALE: retriable('the session ticket is of another broker epoch'),
  PMQ_ERR_PEER_GONE: retriable('the peer\'s connection went away while a request waited'),

  // Control channel (rpc/control-channel.ts).
  PMQ_ERR_PROTOCOL: fatal('a control message that fails the schema, or an unknown error code'),

  // Transport (native/transport.ts).
  PMQ_ERR_TRANSPORT: fatal('a UCX call failed'),
  PMQ_ERR_TRANSPORT_CLOSED: fatal('the transport was closed'),
  PMQ_ERR_ENDPOINT_CLOSED: retriable('the endpoint is closed or closing'),
  PMQ_ERR_PEER_FAILED: retriable('UCX reported the peer\'s failure'),
  PMQ_ERR_PEER_TIMEOUT: retriable('nothing heard from the peer for peerTimeoutMs'),
  PMQ_ERR_GRANT_OUT_OF_RANGE: fatal('the access is not inside the grant (reads: its readable ' +
    'part; writes: from its floor)'),
  PMQ_ERR_GRANT_DIRECTION: fatal('an access against the grant\'s direction'),
  PMQ_ERR_GRANT_REVOKED: fatal('the grant was revoked'),
  PMQ_ERR_GRANT_STALE_EPOCH: fatal('the grant is of another epoch than the request or node'),
  PMQ_ERR_REQUEST_MALFORMED: fatal('the storage node could not parse the request'),
  PMQ_ERR_TRANSFER_FAILED: retriable('the checked transfer failed in UCX'),
  PMQ_ERR_NO_MEMORY_ATTACHED: fatal('the peer exposes no memory'),
  PMQ_ERR_DIRECT_KEY: fatal('bytes that are no direct key, or a key released or gone'),
  PMQ_ERR_DIRECT_FAILED: fatal('a direct put, get or flush failed in UCX'),

  // Clients (clients/errors.ts).
  PMQ_ERR_NOT_CONNECTED: retriable('the broker or a storage node cannot be reached'),
  PMQ_ERR_TIMEOUT: retriable('no reply within the request timeout'),
  PMQ_ERR_CLOSED: fatal('a call on a closed client, producer or consumer'),
  PMQ_ERR_INTERNAL: fatal('something that is not a PmqError failed inside the client (a bug)'),
} as const satisfies Record<`PMQ_ERR_${string}`, ErrorCodeInfo>;

export type ErrorCode = keyof typeof ERROR_CODES;

export function isErrorCode(text: unknown): text is ErrorCode {
  return typeof text === 'string' && Object.hasOwn(ERROR_CODES, text);
}
