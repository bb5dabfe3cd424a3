import { existsSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { type GuestPresetName, guestPresets } from '@tdxsim/guest';
import { policyGuest, type ScenarioGuest } from '@tdxsim/testkit';
import { endIdleGuestThreads, loadWasmGuest, WasmGuest, WasmGuestError } from '@tdxsim/wasm-guest';
import { UsageError, unknownValue } from '../usage-error.js';

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
  /** Releases what the row holds: a wasm row, the idle worker threads kept for its guests. Idempotent. */
  close(): Promise<void>;
}

/** The row of the guest preset `name` (a `--policy` value); a usage error for an unknown one. */
export function presetRow(name: string): GuestRow {
  if (!Object.hasOwn(guestPresets, name)) throw unknownValue('policy', name, Object.keys(guestPresets));
  return { ...policyGuest(name as GuestPresetName), kind: 'preset', close: async () => {} };
}

/**
 * Loads the wasm guest at `file` as a matrix row (`--guest`): compiled once and checked against the ABI of
 * `@tdxsim/wasm-guest` here, booted in a worker thread per scenario. A file that is missing, not wasm, or breaks the
 * ABI is a usage error naming it, before any scenario runs.
 */
export async function loadGuestRow(file: string): Promise<GuestRow> {
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
    factory:
      ({ memoryBytes, fuse }) =>
      (cpu, trace) =>
        WasmGuest.boot(cpu, { image, memoryBytes, trace, ...(fuse === undefined ? {} : { fuse }) }),
    close: () => endIdleGuestThreads(),
  };
}

/**
 * The wasm rows of `files`, named after the files: a name that a preset or another file already has is a usage
 * error (`tdxsim run --guest a/g.wasm --guest b/g.wasm` could not tell the rows apart).
 */
export async function loadGuestRows(files: readonly string[]): Promise<GuestRow[]> {
  const rows: GuestRow[] = [];
  for (const file of files) {
    const row = await loadGuestRow(file);
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
