/**
 * Issue 10, "What must be shown" (input contracts): at least 150 malformed inputs across the public functions of the
 * packages — NaN, negatives, fractions, 2^53, a bigint for a number and a number for a bigint, strings, undefined,
 * values beyond a field's width, unknown options. Each gets a typed error naming the argument, and the package's
 * state snapshot (module, ledger, trace) is unchanged. Other packages add a table of their own (see table.ts).
 */
import { describe, expect, it } from 'vitest';
import { guestTable } from './guest-rows.js';
import { describeMalformedTable } from './table.js';
import { tdxModuleTable } from './tdx-module-rows.js';

const tables = [tdxModuleTable, guestTable] as const;

describe('the malformed-input table', () => {
  it('has at least 150 cases', () => {
    expect(tables.reduce((sum, table) => sum + table.rows.length, 0)).toBeGreaterThanOrEqual(150);
  });
});

describeMalformedTable(tdxModuleTable);
describeMalformedTable(guestTable);
