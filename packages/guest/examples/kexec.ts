/**
 * The kexec path: before a new kernel starts, every shared page goes back to private and is accepted
 * (`guest.unshareAll()`), against the KVM backend. Run: pnpm --filter @tdxsim/guest example:kexec
 */
import { kvmVmm } from '@tdxsim/host-kvm';
import { composeTd } from '@tdxsim/tdx-module';
import { GuestError, GuestIds, guestModule } from '../src/index.js';

export async function kexec(log: (line: string) => void = console.log): Promise<void> {
  const MIB = 2 ** 20;
  const { guest, module, td } = await composeTd({
    vmm: kvmVmm(),
    guest: { module: guestModule({ memoryBytes: 256 * MIB }), id: GuestIds.Guest },
    build: { gpaw: 48, vcpus: 2 },
  });
  // A running kernel: a 64 MiB swiotlb and a few DMA buffers are shared.
  await guest.setShared(64 * MIB, 64 * MIB);
  await guest.setShared(8 * MIB, 4 * 4096, { vcpu: 1 });
  await guest.setShared(9 * MIB, 4096);
  log(`shared before kexec: ${guest.sharedPages} pages`);

  const report = await guest.unshareAll({ verify: { module, tdr: td.tdr } });
  log(
    `unshareAll: ${report.kind}; counted ${report.sharedCounted}, found ${report.sharedFound}, converted back ${report.convertedBack} (${report.mapGpaCalls} MapGPA, ${report.acceptCalls} ACCEPT)`,
  );
  log(
    `not converted: ${report.notConverted.length}; ledger vs module: ${report.mismatches?.length ?? 0} mismatches`,
  );
  try {
    await guest.setShared(64 * MIB, 4096);
  } catch (error) {
    if (GuestError.is(error)) log(`a conversion after it: ${error.code}`);
  }
}

if (import.meta.url === `file://${process.argv[1]}`) await kexec();
