import { mapShared } from './memory.js';
import type { VmState } from './vm-state.js';

const PAGE = 4096;

/**
 * Userspace's view of guest memory (QEMU's address_space_read/write on the memslots): a shared page is the VMM's own
 * memory, the host page KVM mapped in the shared EPT; a shared page never touched reads as zeros and is populated on
 * a write. A page whose attribute is private is not userspace's to read or write: the access fails (undefined/false).
 * `gpa` has the shared bit removed.
 */
export function readGuestShared(vm: VmState, gpa: number, length: number): Uint8Array | undefined {
  const out = new Uint8Array(length);
  for (let done = 0; done < length; ) {
    const at = gpa + done;
    const page = at - (at % PAGE);
    const n = Math.min(PAGE - (at % PAGE), length - done);
    if (!vm.isShared(page)) return undefined;
    const hpa = vm.shared.get(page);
    if (hpa !== undefined) out.set(vm.module.hostRead(hpa + (at - page), n), done);
    done += n;
  }
  return out;
}

/** Writes `bytes` at shared `gpa` (see {@link readGuestShared}); false when a page is private. */
export async function writeGuestShared(vm: VmState, gpa: number, bytes: Uint8Array): Promise<boolean> {
  for (let done = 0; done < bytes.length; ) {
    const at = gpa + done;
    const page = at - (at % PAGE);
    const n = Math.min(PAGE - (at % PAGE), bytes.length - done);
    if (!vm.isShared(page)) return false;
    if (!vm.shared.has(page)) await mapShared(vm, page);
    const hpa = vm.shared.get(page);
    if (hpa === undefined) return false;
    vm.module.hostWrite(hpa + (at - page), bytes.subarray(done, done + n));
    done += n;
  }
  return true;
}
