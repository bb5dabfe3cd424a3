/**
 * A TD exit leaves its registers on the vCPU and the entry's promise resolves with a number; the entry reads them in
 * its continuation. A VMM that enters the vCPU again before that continuation ran (it did not await the previous
 * TDH.VP.ENTER) can make the vCPU exit again while the last exit still waits there: the new exit then goes to its own
 * entry directly. Each entry must answer its own exit — none lost, none answered twice.
 */
import { describe, expect, it } from 'vitest';
import { assertInvariants, RESCHEDULE_VECTOR, SteppingScheduler, VmExitReason } from '../../src/index.js';
import { setup } from '../harness.js';
import { image, regsOf, tdvprOf, vcpuState, vpEnter } from '../tdcall/helpers.js';

const kickExit = (vector: number) =>
  image({ rax: BigInt(VmExitReason.EXTERNAL_INTERRUPT), r9: 0x8000_0000n | BigInt(vector) });
const NMI_EXIT = image({ rax: BigInt(VmExitReason.EXCEPTION_NMI), r9: 0x8000_0202n });

describe('TD exits that come before the last exit of the vCPU was read', () => {
  // Without a deciding scheduler (the entry's continuation is a promise chain) and with one that parks nothing (an
  // async continuation that may yield after the exit).
  it.each([
    ['without a deciding scheduler', undefined],
    ['under a scheduler that parks nothing', new SteppingScheduler()],
  ])(
    'each TDH.VP.ENTER, issued without awaiting the one before, answers its own exit (%s)',
    async (_, scheduler) => {
      const { module, td } = await setup(scheduler === undefined ? {} : { scheduler });
      const tdvpr = tdvprOf(td);
      const vcpu = vcpuState(module, tdvpr);
      const first = vpEnter(module, tdvpr);
      // Kicked out (not awaited) and entered again at once: the first exit is still unread on the vCPU.
      void module.kickVcpu(tdvpr);
      const second = vpEnter(module, tdvpr);
      expect(vcpu.run).toBe('in-guest');
      expect(vcpu.pendingExit).toBeDefined();
      // Two more exits while it is unread: an NMI, then a kick with another vector.
      expect(module.raiseNmi(tdvpr, 'perf').disposition).toBe('nmi-exit');
      const third = vpEnter(module, tdvpr);
      void module.kickVcpu(tdvpr, 0xf2);
      const answers = (await Promise.all([first, second, third])).map(regsOf);
      expect(answers).toEqual([kickExit(RESCHEDULE_VECTOR), NMI_EXIT, kickExit(0xf2)]);
      expect(vcpu.pendingExit).toBeUndefined();
      // The vCPU goes on as usual: the next entry answers the next exit, nothing left over from before.
      module.handleNmiExit(tdvpr);
      const fourth = vpEnter(module, tdvpr);
      await module.kickVcpu(tdvpr, 0xf3);
      expect(regsOf(await fourth)).toEqual(kickExit(0xf3));
      expect(module.hostCpu(tdvpr).mode).toBe('vmx-root');
      assertInvariants(module);
    },
  );
});
