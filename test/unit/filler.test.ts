// Hole fillers: for every reachable (bytes, records) a control batch of exactly that size,
// which validates and decodes with that record count and base offset; and one for every gap a
// closed lease can leave.
import t from 'tap';

import { recordBatchSizeBytesMin, recordBatchSizeReachable } from
  '../../common/record-batch/batch-size.js';
import { encodeFiller } from '../../common/record-batch/filler.js';
import { decodeRecordBatch } from '../../common/record-batch/index.js';
import { FILL_BYTES_MIN, Sequencer, fillRecords } from '../../broker-node/sequencer.js';

t.test('a filler of exactly the hole for every reachable size near varint steps', async (t) => {
  let checked = 0;
  for (const records of [1, 2, 3, 63, 64, 65, 200]) {
    const sizeBytesMin = recordBatchSizeBytesMin(records);
    for (let extra = 0; extra < 9000; extra += extra < 200 || (extra > 8100 && extra < 8300)
      ? 1 : 97) {
      const bytes = sizeBytesMin + extra;
      if (!recordBatchSizeReachable(bytes, records)) continue;
      const filler = encodeFiller(bytes, records, 1000);
      const batch = decodeRecordBatch(filler);
      if (filler.byteLength !== bytes || batch.records.length !== records ||
          batch.baseOffset !== 1000 || !batch.attributes.isControl) {
        t.fail(`filler for ${bytes} bytes, ${records} records`);
      }
      checked += 1;
    }
  }
  t.ok(checked > 1000, `${checked} fillers checked`);
});

t.test('one-record sizes that no batch has are refused at append; every gap fills', async (t) => {
  t.notOk(recordBatchSizeReachable(61 + 65, 1));
  t.notOk(recordBatchSizeReachable(61 + 8194, 1));
  t.ok(recordBatchSizeReachable(61 + 65, 2));
  const sequencer = Sequencer.create({ epoch: 1, segmentSizeBytes: 65536 });
  const first = sequencer.lease({ bytes: 4096, bytesMin: 126, producer: 'p', now: 0 });
  t.equal(first.kind, 'need-segment');
  sequencer.segmentAdded({ segmentId: 's', chainPosition: 0, baseOffset: 0, sizeBytes: 65536 });
  const lease = sequencer.lease({ bytes: 4096, bytesMin: 126, producer: 'p', now: 0 });
  if (lease.kind !== 'leased') throw new Error(`lease answered ${lease.kind}`);
  const refused = sequencer.append({ lease: lease.lease, position: 0, bytes: 126, records: 1,
    now: 0 });
  t.equal(refused.kind === 'refused' && refused.error.code, 'PMQ_ERR_LEASE_INVALID');
  // The gaps a closed lease leaves are filled with 1 or 2 records, whatever their size.
  const wrong: number[] = [];
  for (let bytes = FILL_BYTES_MIN; bytes < 20_000; bytes += 1) {
    const filler = encodeFiller(bytes, fillRecords(bytes), 0);
    if (filler.byteLength !== bytes || decodeRecordBatch(filler).records.length < 1) {
      wrong.push(bytes);
    }
  }
  t.same(wrong, [], `a filler for every gap of ${FILL_BYTES_MIN}..19 999 bytes`);
});
