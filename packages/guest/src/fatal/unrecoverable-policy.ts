import type { TdcallCpu } from '../concurrency/cpu-port.js';
import type { ConversionResult } from '../convert/conversion-result.js';
import type { GpaRange } from '../range.js';
import { vmcallReportFatalError } from './report-fatal-error.js';

/**
 * What a guest does when a conversion fails in a way it cannot recover from — pages left in a state it cannot vouch
 * for (`unknown`, quarantined): `'return'` (default) hands the failed result to the caller, as Linux does;
 * `'report-fatal-error'` stops the TD with TDG.VP.VMCALL<ReportFatalError> and a message naming the range and the
 * first such page, as guests do that treat a broken conversion as fatal (OpenHCL panics when a private → shared
 * conversion fails: it has no safe rollback).
 */
export type UnrecoverablePolicy = 'return' | 'report-fatal-error';

const hex = (n: number): string => `0x${n.toString(16)}`;

/**
 * Applies `policy` to a finished conversion of `range`. With `'report-fatal-error'` and a page left unknown, the
 * report is made (the TD stops: the promise rejects once the VMM stops the vCPU); a VMM that lets the TD go on gets
 * the failed result back to the caller.
 */
export async function afterConversion(
  cpu: TdcallCpu,
  policy: UnrecoverablePolicy | undefined,
  result: ConversionResult,
  range: GpaRange,
  toShared: boolean,
): Promise<ConversionResult> {
  if (policy !== 'report-fatal-error' || result.kind !== 'failed') return result;
  const unknown = result.pages.find((run) => run.outcome === 'unknown');
  if (unknown === undefined) return result;
  const message = `${toShared ? 'to shared' : 'to private'} ${hex(range.start)}+${hex(range.end - range.start)}: ${result.failure.step} failed`;
  await vmcallReportFatalError(cpu, { message, gpa: unknown.start });
  return result;
}
