/*
 * tdxsim.h - the ABI between a TD guest compiled to wasm32 and the tdxsim harness (@tdxsim/wasm-guest).
 *
 * The guest imports two functions from the module "tdxsim":
 *   tdcall(regs)       executes the TDCALL instruction with the registers of *regs and writes the registers
 *                      after it back into *regs (RAX = the TDX status);
 *   log(text, length)  one line of text for the harness's log and trace.
 * and exports the entry points the harness calls (see "Entry points" below).
 *
 * Values in this header follow the TDX module 1.5 ABI and the GHCI 1.5; @tdxsim/wasm-guest's tests hold every
 * constant here against the simulator's own tables.
 *
 * Build (freestanding, no libc; tdxsim_mem.c provides memset/memcpy/memmove/memcmp):
 *   clang --target=wasm32 -O2 -ffreestanding -nostdlib -I<this dir> -Wl,--no-entry \
 *         -o guest.wasm guest.c <this dir>/../tdxsim_mem.c
 */
#ifndef TDXSIM_H
#define TDXSIM_H

#include <stdint.h>

/* ---- The register block ------------------------------------------------------------------------------------
 * The registers TDCALL takes and returns, as 64-bit values in the guest's memory, 8-byte aligned, in this order.
 * RBX, RSI, RDI and RBP are not carried: the harness passes them as 0 and drops what comes back in them. */
struct tdxsim_regs {
  uint64_t rax;
  uint64_t rcx;
  uint64_t rdx;
  uint64_t r8;
  uint64_t r9;
  uint64_t r10;
  uint64_t r11;
  uint64_t r12;
  uint64_t r13;
  uint64_t r14;
  uint64_t r15;
};
#define TDXSIM_REGS_COUNT 11
_Static_assert(sizeof(struct tdxsim_regs) == TDXSIM_REGS_COUNT * 8, "register block is 11 packed 64-bit values");

/* ---- Imports ---------------------------------------------------------------------------------------------- */
#define TDXSIM_IMPORT(name) __attribute__((import_module("tdxsim"), import_name(name)))
#define TDXSIM_EXPORT(name) __attribute__((export_name(name)))

/* The TDCALL instruction. A block outside the guest's memory or not 8-byte aligned, or a RAX that names none of the
 * leaves below (version 0), is a guest fault: the harness ends the guest and reports it. */
TDXSIM_IMPORT("tdcall") void tdxsim_tdcall(struct tdxsim_regs *regs);
/* One log line (at most 4096 bytes are kept; UTF-8). */
TDXSIM_IMPORT("log") void tdxsim_log(const char *text, uint32_t length);

/* ---- TDCALL leaves (RAX on input: bits 15:0 leaf, 23:16 version) ------------------------------------------ */
#define TDXSIM_TDG_VP_VMCALL 0ull
#define TDXSIM_TDG_VP_INFO 1ull
#define TDXSIM_TDG_VP_VEINFO_GET 3ull
#define TDXSIM_TDG_MEM_PAGE_ACCEPT 6ull

/* TDG.VP.INFO: RCX bits 5:0 hold the GPAW (48 or 52); the shared bit is bit GPAW - 1. */
#define TDXSIM_VP_INFO_GPAW_MASK 0x3full

/* TDG.MEM.PAGE.ACCEPT: RCX = GPA | level. */
#define TDXSIM_LEVEL_4K 0
#define TDXSIM_LEVEL_2M 1
#define TDXSIM_LEVEL_1G 2
#define TDXSIM_PAGE_SIZE 4096ull
#define TDXSIM_LEVEL_SIZE(level) (TDXSIM_PAGE_SIZE << (9 * (level)))

/* ---- TDG.VP.VMCALL and the GHCI ---------------------------------------------------------------------------
 * RCX selects the registers the VMM sees and may set (a bitmap by register number: RDX is bit 2, R8-R15 bits
 * 8-15). R10 = 0 selects a standard GHCI call whose sub-function is R11; the VMM's status comes back in R10. */
#define TDXSIM_VMCALL_EXPOSE_BLOCK 0xff04ull /* RDX and R8-R15: every register the block carries */
#define TDXSIM_TDVMCALL_STANDARD 0ull
#define TDXSIM_TDVMCALL_MAP_GPA 0x10001ull
#define TDXSIM_TDVMCALL_SUCCESS 0x0ull
#define TDXSIM_TDVMCALL_RETRY 0x1ull
#define TDXSIM_TDVMCALL_INVALID_OPERAND 0x8000000000000000ull
#define TDXSIM_TDVMCALL_GPA_INUSE 0x8000000000000001ull
#define TDXSIM_TDVMCALL_ALIGN_ERROR 0x8000000000000002ull
#define TDXSIM_TDVMCALL_SUBFUNC_UNSUPPORTED 0x8000000000000003ull

/* ---- TDX status codes (RAX after a TDCALL) ----------------------------------------------------------------
 * Bit 63 set: the call failed. Bit 62: retrying will not help. Bits 47:40: the class. Bits 31:0: detail (an
 * operand id or a level) that the module adds to the base code; compare bases with TDXSIM_STATUS_BASE(). */
#define TDXSIM_STATUS_CODE_MASK 0xffffffff00000000ull
#define TDXSIM_STATUS_BASE(status) ((status) & TDXSIM_STATUS_CODE_MASK)
#define TDXSIM_STATUS_IS_ERROR(status) (((status) >> 63) & 1)
#define TDXSIM_STATUS_NON_RECOVERABLE(status) (((status) >> 62) & 1)
#define TDXSIM_STATUS_CLASS(status) (((status) >> 40) & 0xff)
#define TDXSIM_STATUS_CLASS_OPERAND 0x01
#define TDXSIM_STATUS_CLASS_BUSY 0x02
#define TDXSIM_STATUS_CLASS_EPT 0x0b
#define TDXSIM_TDX_SUCCESS 0x0000000000000000ull
#define TDXSIM_TDX_OPERAND_INVALID 0xc000010000000000ull
#define TDXSIM_TDX_OPERAND_BUSY 0x8000020000000000ull
#define TDXSIM_TDX_PAGE_ALREADY_ACCEPTED 0x00000b0a00000000ull
#define TDXSIM_TDX_PAGE_SIZE_MISMATCH 0xc0000b0b00000000ull

/* ---- Entry points -----------------------------------------------------------------------------------------
 * Required exports (plus the module's "memory"):
 *   int32_t tdxsim_set_shared(uint64_t gpa, uint64_t size, uint8_t *pages);   private -> shared (MapGPA)
 *   int32_t tdxsim_set_private(uint64_t gpa, uint64_t size, uint8_t *pages);  shared -> private (MapGPA, accept)
 *   int32_t tdxsim_accept(uint64_t gpa, uint64_t size, uint8_t *pages);       unaccepted private -> accepted
 * gpa is a private GPA (shared bit clear), 4 KiB aligned; size a positive multiple of 4 KiB. Each returns a
 * TDXSIM_RESULT_* code. pages, when not 0, has one byte per 4 KiB page of the request for the guest to fill
 * with a TDXSIM_PAGE_* value (it comes prefilled with TDXSIM_PAGE_UNWRITTEN).
 * Optional exports:
 *   int32_t  tdxsim_init(void);                    called once before any other entry point (TDXSIM_RESULT_OK
 *                                                  or TDXSIM_RESULT_TDCALL_FAILED)
 *   uint8_t *tdxsim_page_buffer(uint64_t pages);   a buffer of at least `pages` bytes, or 0 for none; without
 *                                                  it, pages is always 0 */
#define TDXSIM_RESULT_OK 0
#define TDXSIM_RESULT_MAP_GPA_STATUS 1         /* the VMM answered a status other than SUCCESS and RETRY */
#define TDXSIM_RESULT_MAP_GPA_RETRY 2          /* a RETRY, and this guest does not retry */
#define TDXSIM_RESULT_MAP_GPA_R11_RANGE 3      /* R11 outside the part of the request still to do */
#define TDXSIM_RESULT_MAP_GPA_R11_UNALIGNED 4  /* R11 not 4 KiB aligned */
#define TDXSIM_RESULT_MAP_GPA_R11_BEYOND 5     /* R11 beyond what the call asked for */
#define TDXSIM_RESULT_MAP_GPA_NO_PROGRESS 6    /* too many RETRYs without progress */
#define TDXSIM_RESULT_MAP_GPA_CALL_BOUND 7     /* more calls than this guest allows for the range */
#define TDXSIM_RESULT_TDCALL_FAILED 8          /* the TDCALL itself failed (RAX != 0) */
#define TDXSIM_RESULT_ACCEPT_FAILED 9          /* TDG.MEM.PAGE.ACCEPT failed */

#define TDXSIM_PAGE_UNCHANGED 0   /* still in its original state: no call reached it */
#define TDXSIM_PAGE_CONVERTED 1   /* in the state asked for */
#define TDXSIM_PAGE_UNKNOWN 2     /* the guest cannot vouch for it: the harness quarantines it */
#define TDXSIM_PAGE_UNWRITTEN 0xff /* left as the harness wrote it: read as UNKNOWN */

/* ---- Freestanding helpers (defined in tdxsim_mem.c) -------------------------------------------------------- */
typedef __SIZE_TYPE__ tdxsim_size_t;
void *memset(void *dst, int value, tdxsim_size_t length);
void *memcpy(void *dst, const void *src, tdxsim_size_t length);
void *memmove(void *dst, const void *src, tdxsim_size_t length);
int memcmp(const void *a, const void *b, tdxsim_size_t length);

/* Logs a NUL-terminated string. */
static inline void tdxsim_log_str(const char *text) {
  uint32_t length = 0;
  while (text[length] != 0) length++;
  tdxsim_log(text, length);
}

#endif /* TDXSIM_H */
