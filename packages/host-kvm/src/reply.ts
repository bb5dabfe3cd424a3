import { type Gprs, Reg } from '@tdxsim/tdx-module';

/**
 * KVM's reply to a TDG.VP.VMCALL: the registers the exit brought (vp_enter_args), R10 set to `status`
 * (tdvmcall_set_return_code); everything else goes back to the guest as it passed it.
 */
export function withStatus(regs: Gprs, status: bigint): Gprs {
  const reply = regs.slice();
  reply[Reg.R10] = status;
  return reply;
}
