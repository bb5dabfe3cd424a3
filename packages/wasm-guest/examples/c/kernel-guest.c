/*
 * kernel-guest.c - a TD guest's memory conversion path, written the way a kernel writes it, for tdxsim.
 *
 * MapGPA over [start, end) asks for the whole rest of the range in each call. RETRY means the VMM did part of
 * it and R11 says where to go on from: R11 must lie in [current, end) (both carrying the request's shared bit);
 * three RETRYs in a row without progress end the operation. Accept goes 1G -> 2M -> 4K at each position,
 * falling back to the next smaller level on any error; a failure at 4K fails the range. After a failed
 * conversion the guest says, page by page, what it can vouch for.
 *
 * Built with TDXSIM_EXAMPLE_OMIT_R11_CHECK (kernel-guest-no-r11-check.c), R11 is followed without the range check:
 * the classic defect this project exists to find.
 */
#include "tdxsim.h"

#define MAX_STALLS 3

static uint64_t shared_bit;

/* The per-page result buffer the harness asks for: grown at the end of memory, never freed. */
extern unsigned char __heap_base;
static uint8_t *page_buffer;
static uint64_t page_buffer_size;

TDXSIM_EXPORT("tdxsim_page_buffer") uint8_t *page_buffer_for(uint64_t pages) {
  if (pages <= page_buffer_size) return page_buffer;
  uintptr_t base = (uintptr_t)&__heap_base;
  uint64_t bytes_needed = base + pages;
  uint64_t have = (uint64_t)__builtin_wasm_memory_size(0) * 65536;
  if (bytes_needed > 0xffffffffull) return 0;
  if (bytes_needed > have) {
    uint64_t grow = (bytes_needed - have + 65535) / 65536;
    if (__builtin_wasm_memory_grow(0, (uintptr_t)grow) == (uintptr_t)-1) return 0;
  }
  page_buffer = (uint8_t *)base;
  page_buffer_size = pages;
  return page_buffer;
}

/* Marks pages [from, to) of the request starting at `start` with `outcome`. */
static void mark(uint8_t *pages, uint64_t start, uint64_t from, uint64_t to, uint8_t outcome) {
  if (pages == 0 || to <= from) return;
  memset(pages + (from - start) / TDXSIM_PAGE_SIZE, outcome, (to - from) / TDXSIM_PAGE_SIZE);
}

TDXSIM_EXPORT("tdxsim_init") int32_t guest_init(void) {
  struct tdxsim_regs regs = {.rax = TDXSIM_TDG_VP_INFO};
  tdxsim_tdcall(&regs);
  uint64_t gpaw = regs.rcx & TDXSIM_VP_INFO_GPAW_MASK;
  if (regs.rax != TDXSIM_TDX_SUCCESS || (gpaw != 48 && gpaw != 52)) return TDXSIM_RESULT_TDCALL_FAILED;
  shared_bit = 1ull << (gpaw - 1);
  tdxsim_log_str(gpaw == 48 ? "kernel-guest: GPAW 48" : "kernel-guest: GPAW 52");
  return TDXSIM_RESULT_OK;
}

/* Where a failed MapGPA left the range: [start, done) converted, [done, asked) maybe, the rest untouched. */
struct map_progress {
  uint64_t done;
  uint64_t asked;
};

/* A GPA of the request (either alias) as a private GPA clamped to [start, end). */
static uint64_t clamp_private(uint64_t gpa, uint64_t start, uint64_t end) {
  uint64_t address = gpa & ~shared_bit;
  return address < start ? start : address > end ? end : address;
}

static int32_t map_gpa(uint64_t start, uint64_t end, int to_shared, struct map_progress *progress) {
  const uint64_t alias = to_shared ? shared_bit : 0;
  const uint64_t first = start | alias;
  const uint64_t stop = end | alias;
  uint64_t current = first;
  uint64_t asked = first;
  unsigned stalls = 0;
  int32_t result;

  while (current < stop) {
    struct tdxsim_regs regs = {
        .rax = TDXSIM_TDG_VP_VMCALL,
        .rcx = TDXSIM_VMCALL_EXPOSE_BLOCK,
        .r10 = TDXSIM_TDVMCALL_STANDARD,
        .r11 = TDXSIM_TDVMCALL_MAP_GPA,
        .r12 = current,
        .r13 = stop - current,
    };
    tdxsim_tdcall(&regs);
    if (regs.rax != TDXSIM_TDX_SUCCESS) {
      result = TDXSIM_RESULT_TDCALL_FAILED;
      goto failed;
    }
    if (current >= first && current < stop) asked = stop;
    if (regs.r10 == TDXSIM_TDVMCALL_SUCCESS) return TDXSIM_RESULT_OK;
    if (regs.r10 != TDXSIM_TDVMCALL_RETRY) {
      result = TDXSIM_RESULT_MAP_GPA_STATUS;
      goto failed;
    }
    /* R11 comes from the untrusted VMM: it must point into what is left of this request. */
#ifndef TDXSIM_EXAMPLE_OMIT_R11_CHECK
    if (regs.r11 < current || regs.r11 >= stop) {
      result = TDXSIM_RESULT_MAP_GPA_R11_RANGE;
      goto failed;
    }
#endif
    if (regs.r11 == current) {
      if (++stalls == MAX_STALLS) {
        result = TDXSIM_RESULT_MAP_GPA_NO_PROGRESS;
        goto failed;
      }
      continue;
    }
    stalls = 0;
    current = regs.r11;
  }
  return TDXSIM_RESULT_OK;

failed:
  /* Only whole pages before `current` are vouched for; a call may have touched up to the page `asked` ends in. */
  progress->done = clamp_private(current, start, end) & ~(TDXSIM_PAGE_SIZE - 1);
  {
    uint64_t reach = clamp_private(asked, start, end);
    uint64_t here = clamp_private(current, start, end);
    if (here > reach) reach = here;
    reach = (reach + TDXSIM_PAGE_SIZE - 1) & ~(TDXSIM_PAGE_SIZE - 1);
    progress->asked = reach < end ? reach : end;
  }
  return result;
}

/* Accepts [start, end); on failure *accepted_end is the first page not accepted. */
static int32_t accept_range(uint64_t start, uint64_t end, uint64_t *accepted_end) {
  uint64_t at = start;
  while (at < end) {
    int level;
    for (level = TDXSIM_LEVEL_1G; level >= TDXSIM_LEVEL_4K; level--) {
      uint64_t size = TDXSIM_LEVEL_SIZE(level);
      if ((at & (size - 1)) != 0 || end - at < size) continue;
      struct tdxsim_regs regs = {.rax = TDXSIM_TDG_MEM_PAGE_ACCEPT, .rcx = at | (uint64_t)level};
      tdxsim_tdcall(&regs);
      if (regs.rax == TDXSIM_TDX_SUCCESS) {
        at += size;
        break;
      }
      /* Any failure above 4K: try the next smaller level for this block. */
    }
    if (level < TDXSIM_LEVEL_4K) {
      *accepted_end = at;
      return TDXSIM_RESULT_ACCEPT_FAILED;
    }
  }
  *accepted_end = end;
  return TDXSIM_RESULT_OK;
}

TDXSIM_EXPORT("tdxsim_set_shared") int32_t set_shared(uint64_t gpa, uint64_t size, uint8_t *pages) {
  const uint64_t end = gpa + size;
  struct map_progress progress;
  int32_t result = map_gpa(gpa, end, 1, &progress);
  if (result == TDXSIM_RESULT_OK) {
    mark(pages, gpa, gpa, end, TDXSIM_PAGE_CONVERTED);
    return result;
  }
  mark(pages, gpa, gpa, progress.done, TDXSIM_PAGE_CONVERTED);
  mark(pages, gpa, progress.done, progress.asked, TDXSIM_PAGE_UNKNOWN);
  mark(pages, gpa, progress.asked > progress.done ? progress.asked : progress.done, end, TDXSIM_PAGE_UNCHANGED);
  return result;
}

TDXSIM_EXPORT("tdxsim_set_private") int32_t set_private(uint64_t gpa, uint64_t size, uint8_t *pages) {
  const uint64_t end = gpa + size;
  struct map_progress progress;
  uint64_t accepted;
  int32_t result = map_gpa(gpa, end, 0, &progress);
  if (result == TDXSIM_RESULT_OK) {
    /* Private again, but unusable until accepted: accept all of it before handing it back. */
    result = accept_range(gpa, end, &accepted);
    mark(pages, gpa, gpa, accepted, TDXSIM_PAGE_CONVERTED);
    mark(pages, gpa, accepted, end, TDXSIM_PAGE_UNKNOWN);
    return result;
  }
  /* What the VMM says it converted is accepted, so those pages at least are known-good private memory. */
  uint64_t done = progress.done;
  if (done > gpa && accept_range(gpa, done, &accepted) != TDXSIM_RESULT_OK) done = accepted;
  uint64_t reach = progress.asked > done ? progress.asked : done;
  mark(pages, gpa, gpa, done, TDXSIM_PAGE_CONVERTED);
  mark(pages, gpa, done, reach, TDXSIM_PAGE_UNKNOWN);
  mark(pages, gpa, reach, end, TDXSIM_PAGE_UNCHANGED);
  return result;
}

TDXSIM_EXPORT("tdxsim_accept") int32_t accept(uint64_t gpa, uint64_t size, uint8_t *pages) {
  const uint64_t end = gpa + size;
  uint64_t accepted;
  int32_t result = accept_range(gpa, end, &accepted);
  mark(pages, gpa, gpa, accepted, TDXSIM_PAGE_CONVERTED);
  mark(pages, gpa, accepted, end, TDXSIM_PAGE_UNKNOWN);
  return result;
}
