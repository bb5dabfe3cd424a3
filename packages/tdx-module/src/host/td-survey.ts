import { sharedBit } from '../abi/gpa.js';
import { PamtPageType } from '../abi/page-type.js';
import { isStatus, TdxStatus } from '../abi/status-codes.js';
import { COPY_BRAND, THIS_COPY } from '../package-copy.js';
import type { TdxModule } from '../tdx-module.js';
import { HostSeamcalls } from './host-seamcalls.js';
import type { BuiltTd } from './td-builder.js';

const PAGE = 4096;

/** Why a TD cannot be taken over as it is: the argument at fault and what was seen. */
export interface TdSurveyRefusal {
  /** The argument at fault: `module`, `td`, `td.tdr`, `td.tdvprs[i]`, `td.gpaw`, or `td` for mapped memory. */
  readonly argument: string;
  readonly message: string;
}

/**
 * What a VMM that did not build a TD learns of it through SEAMCALLs before taking it over (see {@link surveyTd}).
 * `refusal` is set when the TD is not one a backend can adopt with empty tables of its own.
 */
export interface TdSurvey {
  /** TDH.MR.FINALIZE has run: the TD is RUNNABLE (its vCPUs may enter). */
  readonly finalized: boolean;
  /** The first reason the TD cannot be adopted with empty tables; undefined when it can. */
  readonly refusal?: TdSurveyRefusal;
}

/**
 * Surveys a TD that a backend is asked to take over (a TD restored from a checkpoint, say) without having built it,
 * with what a VMM can know: the handle, and SEAMCALL results on `module`. A backend's tables start empty when it
 * adopts a TD, so the survey refuses one whose S-EPT holds anything below its root (a page or table the backend's
 * tables would not know), and one whose handle disagrees with the module: another copy of this package, a handle of
 * another module (its SEAMCALLs do not reach `module`: told by the module's clock, which a SEAMCALL advances — not
 * told when two modules share one clock, nor when SEAMCALLs cost no time), a TDR or TDVPR that is no TD or vCPU there, a TDVPR of another TD there (its PAMT owner),
 * or a GPA width other than the TD's (probed with TDH.MEM.SEPT.RD at the handle's shared bit, which only a wider TD
 * takes as a private GPA). The shared EPT (the VMM's own table, which the model keeps in the module) must be empty
 * too. Costs 3 + 2 × vCPUs + the root's private entries (256 at GPAW 48, 8 at 52) SEAMCALLs, none of which changes the TD
 * (the module's clock advances, as with any SEAMCALL). A TD whose vCPUs already run must not be surveyed (a backend
 * adopts before it starts them).
 */
export async function surveyTd(module: TdxModule, td: BuiltTd): Promise<TdSurvey> {
  const refuse = (argument: string, message: string): TdSurvey => ({
    finalized: false,
    refusal: { argument, message },
  });
  if (typeof module !== 'object' || module === null || typeof module.seamcall !== 'function')
    return refuse('module', 'module must be a TdxModule');
  if ((module as unknown as Record<symbol, unknown>)[COPY_BRAND] !== THIS_COPY)
    return refuse('module', 'module comes from another copy of @tdxsim/tdx-module');
  const shape = handleShape(td);
  if (shape !== undefined) return refuse('td', shape);
  let cpu: unknown;
  try {
    cpu = td.guest(0);
  } catch (error) {
    return refuse('td.tdvprs[0]', `td.guest(0) failed: ${String(error)}`);
  }
  if ((cpu as Record<symbol, unknown> | null)?.[COPY_BRAND] !== THIS_COPY)
    return refuse('td', 'td was built by another copy of @tdxsim/tdx-module');
  const { tdr, gpaw, pwl } = td;
  // TDH.MNG.RD through the handle: the module's clock moves only if the handle's SEAMCALLs reach this module.
  const before = module.clock.now();
  const read = await td.host.mngRead(tdr);
  if (module.clock.now() === before && (await costsTime(module)))
    return refuse('td', "td is a handle of another module: its SEAMCALLs do not reach 'module'");
  if (read.status !== TdxStatus.SUCCESS)
    return refuse('td.tdr', `TDH.MNG.RD of TDR 0x${tdr.toString(16)} answered 0x${read.status.toString(16)}`);
  for (const [i, tdvpr] of td.tdvprs.entries()) {
    const vp = await td.host.vpRead(tdvpr);
    if (vp.status !== TdxStatus.SUCCESS)
      return refuse(
        `td.tdvprs[${i}]`,
        `TDH.VP.RD of TDVPR 0x${tdvpr.toString(16)} answered 0x${vp.status.toString(16)}`,
      );
    // TDH.VP.RD takes a TDVPR of any TD; its PAMT entry (TDH.PHYMEM.PAGE.RDMD, reference tdx-module.md) names the
    // TD that owns it, so a handle mixing vCPUs of another TD in the same module is told apart.
    const owner = await ownerOf(td, tdvpr);
    if (owner !== tdr)
      return refuse(
        `td.tdvprs[${i}]`,
        `TDVPR 0x${tdvpr.toString(16)} ${owner === undefined ? 'is no TDVPR page' : `belongs to the TD of TDR 0x${owner.toString(16)}`}, not to TDR 0x${tdr.toString(16)}`,
      );
  }
  // At the handle's shared bit: OPERAND_INVALID for a TD of that width, a walk for a wider one (GPAW 52 with a
  // handle saying 48); at 2^47 for a handle saying 52: a walk, unless the TD is narrower.
  const probe = await td.host.septRead(tdr, 2 ** 47, Math.min(pwl, 3));
  const narrow = isStatus(probe.status, TdxStatus.OPERAND_INVALID);
  if (narrow !== (gpaw === 48))
    return refuse('td.gpaw', `td.gpaw is ${gpaw}, the TD's GPA width is ${narrow ? 48 : 52}`);
  const rootSpan = PAGE * 512 ** pwl;
  for (let gpa = 0; gpa < sharedBit(gpaw); gpa += rootSpan) {
    const entry = await td.host.septRead(tdr, gpa, pwl);
    if (entry.status !== TdxStatus.SUCCESS)
      return refuse('td', `TDH.MEM.SEPT.RD at 0x${gpa.toString(16)} answered 0x${entry.status.toString(16)}`);
    // RDX bits 15:8: the entry's state as the ABI numbers it, 0 for FREE.
    if (((entry.rdx >> 8n) & 0xffn) !== 0n)
      return refuse(
        'td',
        `private memory is mapped at 0x${gpa.toString(16)} (S-EPT level ${pwl} entry in use): a backend adopts only a TD with nothing mapped`,
      );
  }
  // The shared EPT is the VMM's own table (the module keeps it for the model): a backend adopting starts it empty.
  const shared = module.sharedEpt(tdr).size;
  if (shared > 0)
    return refuse(
      'td',
      `${shared} shared-EPT mapping(s) exist: a backend adopts only a TD with nothing mapped`,
    );
  // TDH.MR.EXTEND is refused with OP_STATE_INCORRECT once finalized; before, at an unmapped GPA it fails its walk.
  const extend = await td.host.mrExtend(tdr, 0);
  return { finalized: isStatus(extend.status, TdxStatus.OP_STATE_INCORRECT) };
}

/** The TDR owning the TDVPR page `tdvpr` per its PAMT entry, or undefined when the page is no TDVPR. */
async function ownerOf(td: BuiltTd, tdvpr: number): Promise<number | undefined> {
  const metadata = await td.host.pageRdmd(tdvpr);
  if (metadata.status !== TdxStatus.SUCCESS || metadata.rcx !== BigInt(PamtPageType.TDVPR)) return undefined;
  return Number(metadata.rdx);
}

/** Whether a SEAMCALL made on `module` itself moves its clock (not with `costs.seamcallNs` 0: no probe then). */
async function costsTime(module: TdxModule): Promise<boolean> {
  const before = module.clock.now();
  await new HostSeamcalls(module).mngRead(0);
  return module.clock.now() !== before;
}

/** What is wrong with the shape of a {@link BuiltTd} handle, or undefined. */
function handleShape(td: BuiltTd): string | undefined {
  if (typeof td !== 'object' || td === null) return 'td must be a BuiltTd';
  if (!Number.isSafeInteger(td.tdr) || td.tdr < 0 || td.tdr % PAGE !== 0)
    return 'td.tdr must be a 4 KiB-aligned host address';
  if (!Array.isArray(td.tdvprs) || td.tdvprs.length === 0) return 'td.tdvprs must be a non-empty array';
  if (td.tdvprs.some((tdvpr) => !Number.isSafeInteger(tdvpr) || tdvpr < 0 || tdvpr % PAGE !== 0))
    return 'td.tdvprs must hold 4 KiB-aligned host addresses';
  if (new Set(td.tdvprs).size !== td.tdvprs.length) return 'td.tdvprs must not name a TDVPR twice';
  if (td.gpaw !== 48 && td.gpaw !== 52) return 'td.gpaw must be 48 or 52';
  if (td.pwl !== (td.gpaw === 48 ? 3 : 4)) return `td.pwl ${String(td.pwl)} does not match GPAW ${td.gpaw}`;
  if (typeof td.host?.septRead !== 'function' || typeof td.guest !== 'function')
    return 'td must be a BuiltTd (buildTd or a checkpoint restore made it)';
  if (typeof td.allocator?.alloc4k !== 'function') return 'td.allocator must be a HostPageAllocator';
  return undefined;
}
