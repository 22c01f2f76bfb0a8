// Hole fillers: for every reachable (bytes, records) a control batch of exactly that size,
// which validates and decodes with the reserved record count and base offset.
import t from 'tap';

import { recordBatchSizeBytesMin, recordBatchSizeReachable } from
  '../../broker-node/batch-size.js';
import { encodeFiller } from '../../broker-node/filler.js';
import { decodeRecordBatch } from '../../common/record-batch/index.js';
import { Sequencer } from '../../broker-node/sequencer.js';

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

t.test('one-record sizes that no batch has are refused at reserve', async (t) => {
  t.notOk(recordBatchSizeReachable(61 + 65, 1));
  t.notOk(recordBatchSizeReachable(61 + 8194, 1));
  t.ok(recordBatchSizeReachable(61 + 65, 2));
  const sequencer = Sequencer.create({ epoch: 1, segmentSizeBytes: 65536 });
  t.throws(() => sequencer.reserve({ bytes: 126, records: 1, producer: 'p', now: 0 }),
    { code: 'PMQ_ERR_RESERVATION_INVALID' });
});
