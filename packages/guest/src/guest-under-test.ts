import type { Gpaw, TdxModule } from '@tdxsim/tdx-module';
import type { AcceptOutcome } from './accept/accept-range.js';
import type { ConversionResult } from './convert/conversion-result.js';
import type { LedgerMismatch } from './ledger/ledger-check.js';
import type { PageLedger } from './ledger/page-ledger.js';
import type { GuestAccess } from './memory/guest-memory.js';

/**
 * What a scenario runner, an explorer and the safety monitor need of a guest, whatever it is written in: `TdGuest`
 * (a policy in TypeScript) and `@tdxsim/wasm-guest`'s `WasmGuest` (real code compiled to wasm) both are one. The
 * ledger is the guest's belief about its pages; the runner holds it, and every conversion's result, against the
 * module's truth.
 */
export interface GuestUnderTest {
  /** The GPA width the guest learnt with TDG.VP.INFO (48 or 52). */
  readonly gpaw: Gpaw;
  /** What the guest believes of each of its pages. */
  readonly ledger: PageLedger;
  /** Private → shared over [start, start + size). Bad arguments and quarantined pages: a `GuestError`. */
  setShared(start: number, size: number): Promise<ConversionResult>;
  /** Shared → private (accepted) over [start, start + size); unaccepted private pages are only accepted. */
  setPrivate(start: number, size: number): Promise<ConversionResult>;
  /** Accepts every unaccepted private page. */
  acceptAll(): Promise<AcceptOutcome>;
  /** Loads `length` bytes at private GPA `gpa` as the guest (accepting an unaccepted page first). */
  read(gpa: number, length: number): Promise<GuestAccess>;
  /** Stores `data` at private GPA `gpa` as the guest. */
  write(gpa: number, data: Uint8Array): Promise<GuestAccess>;
  /** The ledger held against the module's truth for TD `tdr` (empty when they agree). */
  check(module: TdxModule, tdr: number): LedgerMismatch[];
  /** Releases what the guest holds (a wasm guest's worker thread); absent when there is nothing to release. */
  close?(): Promise<void>;
}
