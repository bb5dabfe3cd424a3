/** One memslot as userspace registered it (KVM_SET_USER_MEMORY_REGION2 with KVM_MEM_GUEST_MEMFD). */
export interface Memslot {
  /** The slot id userspace chose. */
  readonly slot: number;
  /** First GPA (4K-aligned, shared bit removed). */
  readonly gpa: number;
  /** Bytes (a positive 4K multiple). */
  readonly size: number;
}

/**
 * KVM's memslots of one VM and the memory behind them. Each slot pairs two kinds of memory, as in KVM: the userspace
 * memory of the slot (what the VMM process mmapped; the shared EPT maps its pages) and a range of guest_memfd (the
 * private pages, AUGed into the S-EPT). The userspace memory belongs to the VMM: its pages exist from the first time
 * the host or the guest touches them and keep their contents whatever the attributes say, across private periods and
 * across removing and re-adding the slot. Without slots added by the caller there is one slot, 0, over every GPA.
 * Source: virt/kvm/kvm_main.c (memslots), virt/kvm/guest_memfd.c.
 */
export class Memslots {
  readonly #slots = new Map<number, Memslot>();
  /** The VMM process's memory behind the slots: 4K GPA → host page (allocated on first touch, never given back). */
  readonly #userspace = new Map<number, number>();
  readonly #alloc: () => number;
  /** The slot {@link find} answered last (forgotten when a slot is added or removed). */
  #lastFound: Memslot | undefined;

  constructor(limit: number, alloc4k: () => number) {
    this.#alloc = alloc4k;
    const whole: Memslot = { slot: 0, gpa: 0, size: limit };
    this.#slots.set(0, whole);
    // The answer of every find until userspace changes the slots: the search loop is then never on the first fault's
    // path, whose code V8 optimised without it (and threw away at the first fault of the next VM in the process).
    this.#lastFound = whole;
  }

  /** The slots, in slot order. */
  list(): Memslot[] {
    return [...this.#slots.values()].sort((a, b) => a.slot - b.slot);
  }

  /** The slot with id `slot`, or undefined. */
  get(slot: number): Memslot | undefined {
    return this.#slots.get(slot);
  }

  /** The slot that holds the 4K page at `gpa`, or undefined. */
  find(gpa: number): Memslot | undefined {
    // Slots never overlap: the slot found last, when it holds the GPA, is the answer (every fault asks, mostly for
    // the same slot), without an iterator over the map.
    const last = this.#lastFound;
    if (last !== undefined && gpa >= last.gpa && gpa < last.gpa + last.size) return last;
    for (const slot of this.#slots.values())
      if (gpa >= slot.gpa && gpa < slot.gpa + slot.size) {
        this.#lastFound = slot;
        return slot;
      }
    return undefined;
  }

  /** A slot that overlaps [gpa, gpa + size), or undefined. */
  overlapping(gpa: number, size: number): Memslot | undefined {
    for (const slot of this.#slots.values())
      if (gpa < slot.gpa + slot.size && slot.gpa < gpa + size) return slot;
    return undefined;
  }

  /** Registers `slot` (the caller checked that nothing overlaps it). */
  add(slot: Memslot): void {
    this.#lastFound = undefined;
    this.#slots.set(slot.slot, slot);
  }

  /** Forgets slot `slot`; its userspace memory stays the VMM's. */
  remove(slot: number): void {
    this.#lastFound = undefined;
    this.#slots.delete(slot);
  }

  /** The host page of userspace memory at 4K `page`, allocated (zeroed) on first use. */
  userspacePage(page: number): number {
    let hpa = this.#userspace.get(page);
    if (hpa === undefined) {
      hpa = this.#alloc();
      this.#userspace.set(page, hpa);
    }
    return hpa;
  }

  /** The host page of userspace memory at 4K `page` if it was ever touched. */
  userspacePageIfAny(page: number): number | undefined {
    return this.#userspace.get(page);
  }
}
