/**
 * No behaviour changes (issue 14), the snapshot's scenarios with the openvmm policy: see behaviour-snapshot.spec.ts.
 */
import { describe, it } from 'vitest';
import { expectSameBehaviour } from './behaviour-snapshot.js';

describe('no behaviour changes: the snapshot taken before the performance work', () => {
  it('every scenario of the snapshot with the openvmm policy: same outcome, reason, violations, notes, counters, detail and trace', async () => {
    await expectSameBehaviour('openvmm');
  }, 600_000);
});
