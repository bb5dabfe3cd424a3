import fc from 'fast-check';
import type { SafetyWorkload, WorkloadStep } from '../properties/safety-workload.js';
import { assertIntegerOption, assertOptions } from '../validation.js';
import { recordDraws } from './record-draws.js';

/**
 * Small safety workloads: `memoryPages` of RAM (default 32) and 1 to `maxSteps` (default 4) conversions of 1 to 8
 * pages in either direction, sometimes an accept-all. Kept small so a fuzz case costs about a millisecond.
 */
export function safetyWorkload(
  options: { readonly memoryPages?: number; readonly maxSteps?: number } = {},
): fc.Arbitrary<SafetyWorkload> {
  assertOptions('safetyWorkload', 'options', options, ['memoryPages', 'maxSteps']);
  assertIntegerOption('memoryPages', options.memoryPages, 1, 2 ** 20);
  assertIntegerOption('maxSteps', options.maxSteps, 1, 64);
  const memoryPages = options.memoryPages ?? 32;
  // fc.record's draws of op, startPage and pages, without its object (only read here): one object less per step.
  const conversion: fc.Arbitrary<WorkloadStep> = recordDraws(
    fc.constantFrom('to-shared' as const, 'to-private' as const),
    fc.integer({ min: 0, max: memoryPages - 1 }),
    fc.integer({ min: 1, max: 8 }),
  )
    // Built field by field (no spread): a campaign maps every step it draws.
    .map(([op, startPage, pages]) => ({
      op,
      startPage,
      pages: Math.min(pages, memoryPages - startPage),
    }));
  const step = fc.oneof(
    { arbitrary: conversion, weight: 6 },
    { arbitrary: fc.constant({ op: 'accept-all' as const }), weight: 1 },
  );
  return fc
    .array(step, { minLength: 1, maxLength: options.maxSteps ?? 4 })
    .map((steps) => ({ memoryPages, steps }));
}
