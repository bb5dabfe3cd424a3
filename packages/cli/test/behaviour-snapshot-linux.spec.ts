/**
 * No behaviour changes (issue 14), the snapshot's scenarios with the linux policy: see behaviour-snapshot.spec.ts.
 */
import { describe, it } from 'vitest';
import { expectSameBehaviour } from './behaviour-snapshot.js';

describe('no behaviour changes: the snapshot taken before the performance work', () => {
  it('every scenario of the snapshot with the linux policy: same outcome, reason, violations, notes, counters, detail and trace', async () => {
    await expectSameBehaviour('linux');
  }, 600_000);
});
