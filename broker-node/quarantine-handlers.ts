/**
 * The operator's side of the quarantine (quarantine.ts; docs/broker.md, "Quarantine"):
 * `quarantineList` lists the segments no topic claims (those whose topic the session may
 * describe), `quarantineFree` frees one of them on explicit request (the `delete` ACL of its
 * topic: its records are gone afterwards). Nothing else ever frees a quarantined segment.
 */
import { PmqError } from '../common/errors.js';
import type { Reply } from '../rpc/control-channel.js';
import { topicOf, type Serve, type ServerContext } from './server.js';

export function registerQuarantineHandlers(serve: Serve, context: ServerContext): void {
  const { access, quarantine, deps, log } = context;
  serve('quarantineList', (_ep, _r, session) => ({ kind: 'quarantined', body: {
    segments: quarantine.list()
      .filter((segment) => access.may(session, topicOf(segment.topic), 'describe'))
      .map((segment) => ({ ...segment })),
  } }));
  serve('quarantineFree', async (_ep, r, session): Promise<Reply> => {
    const segment = quarantine.find(r.nodeId, r.segmentIndex);
    if (segment === undefined) {
      throw new PmqError('PMQ_ERR_NOT_QUARANTINED', `segment ${r.nodeId}/${r.segmentIndex} is ` +
        'not quarantined: `pmq quarantine list` shows the ones that are');
    }
    access.check(session, topicOf(segment.topic), 'delete');
    await deps.pool.request(segment.nodeId, 'segmentFree', { segmentIndex: segment.segmentIndex });
    deps.pool.countSegment(segment.nodeId, -1,
      quarantine.sizeBytesOf(segment.nodeId, segment.segmentIndex));
    quarantine.remove(segment.nodeId, segment.segmentIndex);
    log.warn({ ...segment, principal: session.principal }, 'quarantined segment freed on request');
    return { kind: 'done', body: {} };
  });
}
