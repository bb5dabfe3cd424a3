import type { VmState } from './vm-state.js';

const PAGE = 4096;

/**
 * The VMM process reading its own memory behind the memslots (the hva of a GPA), whatever the GPA's attribute: for a
 * shared GPA it is what the guest sees through the shared alias; for a private one it is what the guest saw there
 * when it was last shared (the private page is guest_memfd's, never userspace's). Never-touched pages read as zeros.
 * `gpa` has the shared bit removed.
 */
export function readUserspace(vm: VmState, gpa: number, length: number): Uint8Array {
  const out = new Uint8Array(length);
  for (let done = 0; done < length; ) {
    const at = gpa + done;
    const page = at - (at % PAGE);
    const n = Math.min(PAGE - (at % PAGE), length - done);
    const hpa = vm.memslots.userspacePageIfAny(page);
    if (hpa !== undefined) out.set(vm.module.hostRead(hpa + (at - page), n), done);
    done += n;
  }
  return out;
}

/** The VMM process writing its own memory behind the memslots (see {@link readUserspace}); pages appear as needed. */
export function writeUserspace(vm: VmState, gpa: number, bytes: Uint8Array): void {
  for (let done = 0; done < bytes.length; ) {
    const at = gpa + done;
    const page = at - (at % PAGE);
    const n = Math.min(PAGE - (at % PAGE), bytes.length - done);
    vm.module.hostWrite(vm.memslots.userspacePage(page) + (at - page), bytes.subarray(done, done + n));
    done += n;
  }
}

/** Whether every page of [gpa, gpa + length) is shared. */
function allShared(vm: VmState, gpa: number, length: number): boolean {
  for (let page = gpa - (gpa % PAGE); page < gpa + length; page += PAGE) if (!vm.isShared(page)) return false;
  return true;
}

/**
 * Userspace's view of guest memory for a device or a GHCI service (QEMU's address_space_read on the memslots): only
 * shared pages are the guest's to hand over; a range with a private page fails (undefined). `gpa` has the shared bit
 * removed.
 */
export function readGuestShared(vm: VmState, gpa: number, length: number): Uint8Array | undefined {
  return allShared(vm, gpa, length) ? readUserspace(vm, gpa, length) : undefined;
}

/** Writes `bytes` at shared `gpa` (see {@link readGuestShared}); false when a page is private. */
export async function writeGuestShared(vm: VmState, gpa: number, bytes: Uint8Array): Promise<boolean> {
  if (!allShared(vm, gpa, bytes.length)) return false;
  writeUserspace(vm, gpa, bytes);
  return true;
}
