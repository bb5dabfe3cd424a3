import { TdxStatus } from '../abi/status-codes.js';
import { formatStatus } from '../abi/status-decoder.js';
import {
  assertAddress,
  assertGpawValue,
  assertHasMethod,
  assertIntegerInRange,
  assertKnownOptions,
  assertObject,
  assertOneOf,
  assertUnsigned,
  TdxSimError,
} from '../errors.js';
import { assertModule } from '../inspect/assert-module.js';
import { HostPageAllocator } from '../memory/host-page-allocator.js';
import { assertSameCopy } from '../package-copy.js';
import type { GuestCpu, TdxModule } from '../tdx-module.js';
import { runVcpu, type Vmm } from '../vmm-port.js';
import { encodeTdParams, HostSeamcalls, type SeamcallResult } from './host-seamcalls.js';
import { ensureSeptTables } from './sept-tables.js';

/**
 * How {@link buildTd} (and a backend's factory) builds a TD: GPA width, vCPUs, attributes, HKID, the initial
 * image and whether to finalise.
 */
export interface BuildTdOptions {
  /** Guest physical address width: the shared bit is GPA bit 47 (48) or 51 (52). Default 48. */
  readonly gpaw?: 48 | 52;
  /** Number of vCPUs (TDH.VP.CREATE + INIT each). Default 1. */
  readonly vcpus?: number;
  /** TD ATTRIBUTES (see {@link TdAttribute}). Default 0. */
  readonly attributes?: bigint;
  /** The private HKID. Default: the lowest one not in use. */
  readonly hkid?: number;
  /**
   * Pages copied in with TDH.MEM.PAGE.ADD before finalisation: one entry per page, a 4K-aligned GPA and at most 4096
   * bytes (the rest of the page is zero).
   */
  readonly initialImage?: readonly { readonly gpa: number; readonly bytes: Uint8Array }[];
  /** Stop after TDH.MNG.INIT and VP.INIT (OP_STATE INITIALIZED). Default false: finalise to RUNNABLE. */
  readonly skipFinalize?: boolean;
}

/** A TD built by {@link buildTd}: its addresses and the host handles to drive it. */
export interface BuiltTd {
  readonly tdr: number;
  readonly tdvprs: readonly number[];
  readonly gpaw: 48 | 52;
  readonly pwl: number;
  readonly host: HostSeamcalls;
  readonly allocator: HostPageAllocator;
  /** The guest view of vCPU `index`. */
  guest(index: number): GuestCpu;
  /** Starts a host thread per vCPU running `vmm` (TDH.VP.ENTER loops). */
  run(vmm: Vmm): Promise<void>[];
}

function check(what: string, result: SeamcallResult): void {
  if (result.status !== TdxStatus.SUCCESS) {
    throw new TdxSimError('INVALID_ARGUMENT', `${what} failed: ${formatStatus(result.status)}`);
  }
}

/**
 * Builds a TD through SEAMCALLs only, in the life-cycle order of reference tdx-module.md §13.4: MNG.CREATE,
 * KEY.CONFIG, ADDCX, INIT, per vCPU VP.CREATE/ADDCX/INIT, SEPT.ADD + PAGE.ADD + MR.EXTEND for the initial image,
 * MR.FINALIZE. This is host work (what a VMM does); the VMM packages build on it.
 */
export async function buildTd(
  module: TdxModule,
  options: BuildTdOptions = {},
  allocator = new HostPageAllocator(module.tdmr),
): Promise<BuiltTd> {
  assertSameCopy('module', module);
  assertKnownOptions('buildTd', options, [
    'gpaw',
    'vcpus',
    'attributes',
    'hkid',
    'initialImage',
    'skipFinalize',
  ]);
  assertModule(module);
  assertHasMethod('allocator', allocator, 'alloc4k');
  if (options.gpaw !== undefined) assertGpawValue('gpaw', options.gpaw);
  if (options.vcpus !== undefined) assertIntegerInRange('vcpus', options.vcpus, 1, 0xffff);
  if (options.attributes !== undefined) assertUnsigned('attributes', options.attributes);
  if (options.hkid !== undefined) assertIntegerInRange('hkid', options.hkid, 1, 65535);
  if (options.skipFinalize !== undefined) assertOneOf('skipFinalize', options.skipFinalize, [true, false]);
  if (options.initialImage !== undefined) {
    if (!Array.isArray(options.initialImage))
      throw new TdxSimError('INVALID_ARGUMENT', 'initialImage must be an array', 'initialImage');
    options.initialImage.forEach((page: unknown, i) => {
      assertObject(`initialImage[${i}]`, page);
      assertKnownOptions('buildTd', page, ['gpa', 'bytes']);
      const { gpa, bytes } = page as { gpa: number; bytes: unknown };
      assertAddress(`initialImage[${i}].gpa`, gpa);
      if (gpa % 4096 !== 0)
        throw new TdxSimError(
          'INVALID_ADDRESS',
          `initialImage[${i}].gpa must be 4 KiB-aligned`,
          `initialImage[${i}].gpa`,
        );
      if (!(bytes instanceof Uint8Array))
        throw new TdxSimError(
          'INVALID_ARGUMENT',
          `initialImage[${i}].bytes must be a Uint8Array`,
          `initialImage[${i}].bytes`,
        );
      // One entry is one page (one TDH.MEM.PAGE.ADD): more bytes were cut at 4 KiB without a word.
      if (bytes.length > 4096)
        throw new TdxSimError(
          'INVALID_ARGUMENT',
          `initialImage[${i}].bytes must hold one page, at most 4096 bytes, got ${bytes.length} (give each page an entry)`,
          `initialImage[${i}].bytes`,
        );
    });
  }
  const host = new HostSeamcalls(module);
  const gpaw = options.gpaw ?? 48;
  const vcpus = options.vcpus ?? 1;
  const tdr = allocator.alloc4k();
  check('TDH.MNG.CREATE', await host.mngCreate(tdr, options.hkid ?? nextHkid(module)));
  check('TDH.MNG.KEY.CONFIG', await host.mngKeyConfig(tdr));
  for (let i = 0; i < module.state.config.tdcsPages; i++)
    check('TDH.MNG.ADDCX', await host.mngAddcx(tdr, allocator.alloc4k()));
  const params = allocator.alloc4k();
  const tdParams = {
    gpaw,
    maxVcpus: vcpus,
    ...(options.attributes === undefined ? {} : { attributes: options.attributes }),
  };
  module.hostWrite(params, encodeTdParams(tdParams));
  check('TDH.MNG.INIT', await host.mngInit(tdr, params));
  allocator.free4k(params);
  const tdvprs: number[] = [];
  for (let i = 0; i < vcpus; i++) {
    const tdvpr = allocator.alloc4k();
    check('TDH.VP.CREATE', await host.vpCreate(tdr, tdvpr));
    for (let j = 0; j < module.state.config.tdvpxPages; j++)
      check('TDH.VP.ADDCX', await host.vpAddcx(tdvpr, allocator.alloc4k()));
    check('TDH.VP.INIT', await host.vpInit(tdvpr));
    tdvprs.push(tdvpr);
  }
  const pwl = module.state.tds.get(tdr)?.pwl ?? 3;
  for (const { gpa, bytes } of options.initialImage ?? []) {
    const status = await ensureSeptTables(module, host, allocator, tdr, gpa, 0, pwl);
    if (status !== TdxStatus.SUCCESS)
      throw new TdxSimError('INVALID_ARGUMENT', `TDH.MEM.SEPT.ADD failed: ${formatStatus(status)}`);
    const source = allocator.alloc4k();
    module.hostWrite(source, bytes.subarray(0, 4096));
    check('TDH.MEM.PAGE.ADD', await host.pageAdd(tdr, gpa, allocator.alloc4k(), source));
    for (let offset = 0; offset < 4096; offset += 256)
      check('TDH.MR.EXTEND', await host.mrExtend(tdr, gpa + offset));
    allocator.free4k(source);
  }
  if (options.skipFinalize !== true) check('TDH.MR.FINALIZE', await host.mrFinalize(tdr));
  return builtTdHandle(module, { tdr, tdvprs, gpaw, pwl, allocator }, host);
}

/** The {@link BuiltTd} handle of a TD that exists in `module` (after a build, or restored from a checkpoint). */
export function builtTdHandle(
  module: TdxModule,
  td: Pick<BuiltTd, 'tdr' | 'tdvprs' | 'gpaw' | 'pwl' | 'allocator'>,
  host = new HostSeamcalls(module),
): BuiltTd {
  const { tdr, tdvprs, gpaw, pwl, allocator } = td;
  return {
    tdr,
    tdvprs,
    gpaw,
    pwl,
    host,
    allocator,
    guest: (index) => {
      const tdvpr = tdvprs[index];
      if (tdvpr === undefined) throw new TdxSimError('INVALID_ARGUMENT', `no vCPU ${index}`, 'index');
      return module.guestCpu(tdvpr);
    },
    run: (vmm) => tdvprs.map((tdvpr, vcpuIndex) => runVcpu(module, vmm, { tdr, tdvpr, vcpuIndex })),
  };
}

function nextHkid(module: TdxModule): number {
  for (let hkid = 1; hkid <= module.state.config.maxHkid; hkid++)
    if (!module.state.hkidsInUse.has(hkid)) return hkid;
  throw new TdxSimError('INVALID_ARGUMENT', 'no free HKID left', 'hkid');
}
