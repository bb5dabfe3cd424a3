/**
 * The README's worked example: the C guest and its copy without the R11 check, each against KVM and against a
 * hostile VMM that answers RETRY with R11 past the end of the request, judged by the testkit's safety monitor.
 * Run with: pnpm --filter @tdxsim/wasm-guest example. Besides this package it needs @tdxsim/host-kvm (the backend) and
 * @tdxsim/testkit (the hostile backend, the safety monitor): its optional peer dependencies.
 */
import { fileURLToPath } from 'node:url';
import { kvmVmm } from '@tdxsim/host-kvm';
import { composeTd } from '@tdxsim/tdx-module';
import { ConversionEvidenceSink, hostileVmm, SafetyMonitor } from '@tdxsim/testkit';
import { loadWasmGuest, WasmGuestIds, wasmGuestModule } from '@tdxsim/wasm-guest';
import { buildCExamples } from './build-examples.js';

const MIB = 2 ** 20;

export async function workedExample(print: (line: string) => void): Promise<void> {
  const built = await buildCExamples(); // clang + wasm-ld: kernel-guest.wasm, kernel-guest-no-r11-check.wasm
  const backends = [
    ['kvm', () => kvmVmm({})],
    ['r11-past-end', () => hostileVmm('r11-past-end')?.module() ?? kvmVmm({})],
  ] as const;
  for (const file of [built.c, built.cNoR11Check]) {
    const image = await loadWasmGuest(file); // compiled once, checked against the ABI
    for (const [name, vmm] of backends) {
      const probe = new ConversionEvidenceSink(); // sees every MapGPA reply: what the VMM acknowledged
      const { guest, module, td } = await composeTd({
        vmm: vmm(),
        guest: { module: wasmGuestModule({ image, memoryBytes: 64 * MIB }), id: WasmGuestIds.Guest },
        sim: { trace: probe },
      });
      const monitor = new SafetyMonitor({ module, tdr: td.tdr, guest });
      const range = { start: 16 * MIB, end: 17 * MIB };
      const result = await guest.setShared(range.start, range.end - range.start);
      await monitor.afterConversion(range, true, result, probe.takeEvidence());
      await monitor.check();
      const verdict = monitor.safe ? 'safe' : `UNSAFE: ${monitor.violations[0]?.message}`;
      const quarantined = guest.ledger.totals().quarantined / 4096;
      print(`${image.name} on ${name}: ${result.kind}, ${quarantined} pages quarantined, ${verdict}`);
      await guest.close();
    }
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) await workedExample(console.log);
