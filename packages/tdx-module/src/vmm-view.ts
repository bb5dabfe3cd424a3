/** One mapping in a backend's view: a leaf of `level` (0 = 4K, 1 = 2M, 2 = 1G) at the aligned private GPA `gpa`. */
export interface ViewedMapping {
  readonly gpa: number;
  readonly level: 0 | 1 | 2;
  /** The host page, when the backend keeps it. */
  readonly hpa?: number;
}

/**
 * What a backend believes it has mapped for its TD: the optional part of the {@link Vmm} port that checkers hold
 * against the module's truth at quiescence (`checkVmmView`). No real VMM can read the Secure-EPT, so a backend that
 * keeps a table of its own (KVM's mirror S-EPT, its memslots) can diverge from it; a divergence is a bug of the
 * backend that the tools must surface, before a guest trips over it.
 */
export interface VmmView {
  /**
   * The private leaves it believes are in the Secure-EPT: every page it added or AUGed and has not removed, at the
   * level it mapped it (blocked ones included), keyed by private GPA.
   */
  privateMappings(): Iterable<ViewedMapping>;
  /** The shared-EPT mappings it believes it made, per 4K frame (private-alias GPA, level 0). */
  sharedMappings(): Iterable<ViewedMapping>;
}
