// The addon exports exactly what the typed binding declares: no more, no less.
import t from 'tap';

import { CORE_EXPORTS, native } from '../../native/index.js';
import { CRC32C_EXPORTS } from '../../native/binding-crc32c.js';
import { REGION_EXPORTS } from '../../native/binding-region.js';
import { TRANSPORT_EXPORTS } from '../../native/binding-transport.js';

t.test('addon exports match the declared binding', async (t) => {
  const declared = [...CORE_EXPORTS, ...CRC32C_EXPORTS, ...REGION_EXPORTS, ...TRANSPORT_EXPORTS]
    .map(String).sort();
  t.same(Object.keys(native).sort(), declared);
});
