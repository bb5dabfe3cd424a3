import { existsSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { type GuestPresetName, guestPresets } from '@tdxsim/guest';
import { policyGuest, type ScenarioGuest } from '@tdxsim/testkit';
import { endIdleGuestThreads, loadWasmGuest, WasmGuest, WasmGuestError } from '@tdxsim/wasm-guest';
import { assertIntegerOption, assertOptions } from '../api-validation.js';
import { UsageError, unknownValue } from '../usage-error.js';

/** The most milliseconds `--guest-timeout` (and {@link GuestRowOptions.callTimeoutMs}) takes: 24 hours. */
export const MAX_GUEST_CALL_TIMEOUT_MS = 86_400_000;
/** `@tdxsim/wasm-guest`'s default `callTimeoutMs` (WasmGuestOptions), shown in `tdxsim run --help`. */
export const DEFAULT_GUEST_CALL_TIMEOUT_MS = 5000;

/**
 * A row of the matrix: the guest every scenario of the row boots. A preset of `TdGuest` (`--policy`), or real guest
 * code compiled to WebAssembly (`--guest file.wasm`). `factory` gives `composeTd` the guest of one scenario (close
 * it after the scenario: `guest.close?.()`); `close` releases what the row itself holds once no scenario of it will
 * run in this thread any more.
 */
export interface GuestRow extends ScenarioGuest {
  /** The row's name in scenario ids and reports: the preset's name, or the wasm file's name (`kernel-guest.wasm`). */
  readonly name: string;
  readonly kind: 'preset' | 'wasm';
  /** A wasm row's file (absolute): reports record it so that `replay` loads the same guest. */
  readonly file?: string;
  /** A wasm row's {@link GuestRowOptions.callTimeoutMs}, when one was given (matrix workers load the row with it). */
  readonly callTimeoutMs?: number;
  /** Releases what the row holds: a wasm row, the idle worker threads kept for its guests. Idempotent. */
  close(): Promise<void>;
}

/** The row of the guest preset `name` (a `--policy` value); a usage error for an unknown one. */
export function presetRow(name: string): GuestRow {
  if (!Object.hasOwn(guestPresets, name)) throw unknownValue('policy', name, Object.keys(guestPresets));
  return { ...policyGuest(name as GuestPresetName), kind: 'preset', close: async () => {} };
}

/** How a wasm row's guests run (`tdxsim run --guest-timeout`). */
export interface GuestRowOptions {
  /**
   * Milliseconds the guest may run between two TDCALLs before it is said to hang (an `error` outcome naming it): an
   * integer from 1 to {@link MAX_GUEST_CALL_TIMEOUT_MS}. Default: `@tdxsim/wasm-guest`'s,
   * {@link DEFAULT_GUEST_CALL_TIMEOUT_MS}.
   */
  readonly callTimeoutMs?: number;
}

/**
 * Loads the wasm guest at `file` as a matrix row (`--guest`): compiled once and checked against the ABI of
 * `@tdxsim/wasm-guest` here, booted in a worker thread per scenario. A file that is missing, not wasm, or breaks the
 * ABI is a usage error naming it, before any scenario runs; so is a bad option.
 */
export async function loadGuestRow(file: string, options: GuestRowOptions = {}): Promise<GuestRow> {
  checkGuestRowOptions('loadGuestRow', options);
  const { callTimeoutMs } = options;
  const path = resolve(file);
  if (!existsSync(path)) throw new UsageError(`guest file "${file}" does not exist`);
  if (statSync(path).isDirectory()) throw new UsageError(`guest file "${file}" is a directory, not a file`);
  let image: Awaited<ReturnType<typeof loadWasmGuest>>;
  try {
    image = await loadWasmGuest(path);
  } catch (error) {
    if (WasmGuestError.is(error)) throw new UsageError(`guest file "${file}": ${error.message}`);
    throw error;
  }
  return {
    name: image.name,
    kind: 'wasm',
    file: path,
    ...(callTimeoutMs === undefined ? {} : { callTimeoutMs }),
    factory:
      ({ memoryBytes, fuse }) =>
      (cpu, trace) =>
        WasmGuest.boot(cpu, {
          image,
          memoryBytes,
          trace,
          ...(fuse === undefined ? {} : { fuse }),
          ...(callTimeoutMs === undefined ? {} : { callTimeoutMs }),
        }),
    close: () => endIdleGuestThreads(),
  };
}

/**
 * The options a matrix worker loads the wasm rows of `catalog` with: the rows' own (`buildCatalog` gives every row the
 * same). Rows loaded with different options are a usage error: a worker loads them all with one set.
 */
export function guestRowOptions(catalog: { readonly guests: readonly GuestRow[] }): GuestRowOptions {
  catalog.guests.forEach((row, i) => {
    if (row.callTimeoutMs !== undefined)
      assertIntegerOption(
        `catalog.guests[${i}].callTimeoutMs`,
        row.callTimeoutMs,
        1,
        MAX_GUEST_CALL_TIMEOUT_MS,
      );
  });
  const timeouts = new Set(catalog.guests.filter((g) => g.kind === 'wasm').map((g) => g.callTimeoutMs));
  if (timeouts.size > 1)
    throw new UsageError(
      `the wasm guest rows were loaded with different callTimeoutMs (${[...timeouts].map(String).join(', ')}): load them with the same options`,
      'INVALID_OPTION',
      'catalog',
    );
  const [callTimeoutMs] = timeouts;
  return callTimeoutMs === undefined ? {} : { callTimeoutMs };
}

/** `options` of {@link loadGuestRow} and {@link loadGuestRows}: a typed usage error naming the bad one. */
export function checkGuestRowOptions(where: string, options: unknown): void {
  assertOptions(where, 'options', options, ['callTimeoutMs']);
  assertIntegerOption(
    'callTimeoutMs',
    (options as GuestRowOptions | undefined)?.callTimeoutMs,
    1,
    MAX_GUEST_CALL_TIMEOUT_MS,
  );
}

/**
 * The wasm rows of `files`, named after the files, each loaded with `options`: a name that a preset or another file
 * already has is a usage error (`tdxsim run --guest a/g.wasm --guest b/g.wasm` could not tell the rows apart).
 */
export async function loadGuestRows(
  files: readonly string[],
  options: GuestRowOptions = {},
): Promise<GuestRow[]> {
  checkGuestRowOptions('loadGuestRows', options);
  const rows: GuestRow[] = [];
  for (const file of files) {
    const row = await loadGuestRow(file, options);
    const taken = Object.hasOwn(guestPresets, row.name)
      ? 'a guest preset'
      : rows.find((r) => r.name === row.name)?.file;
    if (taken !== undefined)
      throw new UsageError(
        `guest file "${file}" would be named "${row.name}", which ${taken} has: rename the file`,
      );
    rows.push(row);
  }
  return rows;
}
