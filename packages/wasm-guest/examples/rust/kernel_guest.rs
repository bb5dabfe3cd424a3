//! kernel_guest.rs - the conversion path of examples/c/kernel-guest.c in `no_std` Rust, for tdxsim.
//!
//! MapGPA asks for the rest of the range in each call; on RETRY, R11 must lie in [current, end) with the request's
//! shared bit, and three RETRYs in a row without progress end the operation. Accept goes 1G -> 2M -> 4K at each
//! position, any error sending it one level down. After a failure the guest says page by page what it vouches for.
//!
//! Build (Debian: `apt-get install rustc libstd-rust-dev-wasm32`):
//!   rustc --target wasm32-unknown-unknown --crate-type cdylib -C opt-level=2 -C panic=abort \
//!         -o kernel-guest-rust.wasm kernel_guest.rs
#![no_std]

use core::arch::wasm32;

// The ABI of c/include/tdxsim.h, restated in Rust.
#[repr(C)]
#[derive(Default)]
struct Regs {
    rax: u64,
    rcx: u64,
    rdx: u64,
    r8: u64,
    r9: u64,
    r10: u64,
    r11: u64,
    r12: u64,
    r13: u64,
    r14: u64,
    r15: u64,
}

#[link(wasm_import_module = "tdxsim")]
extern "C" {
    #[link_name = "tdcall"]
    fn tdxsim_tdcall(regs: *mut Regs);
    #[link_name = "log"]
    fn tdxsim_log(text: *const u8, length: u32);
}

const TDG_VP_VMCALL: u64 = 0;
const TDG_VP_INFO: u64 = 1;
const TDG_MEM_PAGE_ACCEPT: u64 = 6;
const VMCALL_EXPOSE_BLOCK: u64 = 0xff04;
const TDVMCALL_STANDARD: u64 = 0;
const TDVMCALL_MAP_GPA: u64 = 0x10001;
const TDVMCALL_SUCCESS: u64 = 0;
const TDVMCALL_RETRY: u64 = 1;
const TDX_SUCCESS: u64 = 0;
const PAGE: u64 = 4096;

const RESULT_OK: i32 = 0;
const RESULT_MAP_GPA_STATUS: i32 = 1;
const RESULT_MAP_GPA_R11_RANGE: i32 = 3;
const RESULT_MAP_GPA_NO_PROGRESS: i32 = 6;
const RESULT_TDCALL_FAILED: i32 = 8;
const RESULT_ACCEPT_FAILED: i32 = 9;

const PAGE_UNCHANGED: u8 = 0;
const PAGE_CONVERTED: u8 = 1;
const PAGE_UNKNOWN: u8 = 2;

const MAX_STALLS: u32 = 3;

static mut SHARED_BIT: u64 = 0;
static mut BUFFER: *mut u8 = core::ptr::null_mut();
static mut BUFFER_PAGES: u64 = 0;

fn tdcall(regs: &mut Regs) {
    unsafe { tdxsim_tdcall(regs) }
}

fn log(text: &str) {
    unsafe { tdxsim_log(text.as_ptr(), text.len() as u32) }
}

fn shared_bit() -> u64 {
    unsafe { SHARED_BIT }
}

/// One byte per 4 KiB page of a request, filled with the page's outcome.
struct Outcome {
    pages: *mut u8,
    start: u64,
}

impl Outcome {
    fn mark(&self, from: u64, to: u64, value: u8) {
        if self.pages.is_null() || to <= from {
            return;
        }
        let first = ((from - self.start) / PAGE) as usize;
        for i in 0..((to - from) / PAGE) as usize {
            unsafe { *self.pages.add(first + i) = value }
        }
    }
}

#[no_mangle]
pub extern "C" fn tdxsim_page_buffer(pages: u64) -> *mut u8 {
    unsafe {
        if pages <= BUFFER_PAGES {
            return BUFFER;
        }
        if pages > u32::MAX as u64 {
            return core::ptr::null_mut();
        }
        let grow = ((pages + 65535) / 65536) as usize;
        let old = wasm32::memory_grow(0, grow);
        if old == usize::MAX {
            return core::ptr::null_mut();
        }
        BUFFER = (old * 65536) as *mut u8;
        BUFFER_PAGES = pages;
        BUFFER
    }
}

#[no_mangle]
pub extern "C" fn tdxsim_init() -> i32 {
    let mut regs = Regs { rax: TDG_VP_INFO, ..Regs::default() };
    tdcall(&mut regs);
    let gpaw = regs.rcx & 0x3f;
    if regs.rax != TDX_SUCCESS || (gpaw != 48 && gpaw != 52) {
        return RESULT_TDCALL_FAILED;
    }
    unsafe { SHARED_BIT = 1 << (gpaw - 1) }
    log("kernel-guest (rust): booted");
    RESULT_OK
}

/// Where a failed MapGPA stopped: [start, done) converted, [done, asked) maybe, the rest untouched.
struct Stopped {
    result: i32,
    done: u64,
    asked: u64,
}

fn map_gpa(start: u64, end: u64, to_shared: bool) -> Result<(), Stopped> {
    let alias = if to_shared { shared_bit() } else { 0 };
    let first = start | alias;
    let stop = end | alias;
    let mut current = first;
    let mut asked = first;
    let mut stalls = 0;
    let clamp = |gpa: u64| (gpa & !shared_bit()).clamp(start, end);
    let stopped = |result: i32, current: u64, asked: u64| {
        let here = clamp(current);
        let reach = (clamp(asked).max(here) + PAGE - 1) & !(PAGE - 1);
        Stopped { result, done: here & !(PAGE - 1), asked: reach.min(end) }
    };
    while current < stop {
        let mut regs = Regs {
            rax: TDG_VP_VMCALL,
            rcx: VMCALL_EXPOSE_BLOCK,
            r10: TDVMCALL_STANDARD,
            r11: TDVMCALL_MAP_GPA,
            r12: current,
            r13: stop.wrapping_sub(current),
            ..Regs::default()
        };
        tdcall(&mut regs);
        if regs.rax != TDX_SUCCESS {
            return Err(stopped(RESULT_TDCALL_FAILED, current, asked));
        }
        if current >= first && current < stop {
            asked = stop;
        }
        match regs.r10 {
            TDVMCALL_SUCCESS => return Ok(()),
            TDVMCALL_RETRY => {}
            _ => return Err(stopped(RESULT_MAP_GPA_STATUS, current, asked)),
        }
        // R11 comes from the untrusted VMM: it must point into what is left of this request.
        if regs.r11 < current || regs.r11 >= stop {
            return Err(stopped(RESULT_MAP_GPA_R11_RANGE, current, asked));
        }
        if regs.r11 == current {
            stalls += 1;
            if stalls == MAX_STALLS {
                return Err(stopped(RESULT_MAP_GPA_NO_PROGRESS, current, asked));
            }
            continue;
        }
        stalls = 0;
        current = regs.r11;
    }
    Ok(())
}

/// Accepts [start, end); Err holds the first page not accepted.
fn accept_range(start: u64, end: u64) -> Result<(), u64> {
    let mut at = start;
    'blocks: while at < end {
        for level in (0..=2u64).rev() {
            let size = PAGE << (9 * level);
            if at % size != 0 || end - at < size {
                continue;
            }
            let mut regs = Regs { rax: TDG_MEM_PAGE_ACCEPT, rcx: at | level, ..Regs::default() };
            tdcall(&mut regs);
            if regs.rax == TDX_SUCCESS {
                at += size;
                continue 'blocks;
            }
        }
        return Err(at);
    }
    Ok(())
}

#[no_mangle]
pub extern "C" fn tdxsim_set_shared(gpa: u64, size: u64, pages: *mut u8) -> i32 {
    let end = gpa + size;
    let out = Outcome { pages, start: gpa };
    match map_gpa(gpa, end, true) {
        Ok(()) => {
            out.mark(gpa, end, PAGE_CONVERTED);
            RESULT_OK
        }
        Err(s) => {
            out.mark(gpa, s.done, PAGE_CONVERTED);
            out.mark(s.done, s.asked, PAGE_UNKNOWN);
            out.mark(s.asked.max(s.done), end, PAGE_UNCHANGED);
            s.result
        }
    }
}

#[no_mangle]
pub extern "C" fn tdxsim_set_private(gpa: u64, size: u64, pages: *mut u8) -> i32 {
    let end = gpa + size;
    let out = Outcome { pages, start: gpa };
    match map_gpa(gpa, end, false) {
        Ok(()) => {
            let accepted = accept_range(gpa, end).err().unwrap_or(end);
            out.mark(gpa, accepted, PAGE_CONVERTED);
            out.mark(accepted, end, PAGE_UNKNOWN);
            if accepted == end { RESULT_OK } else { RESULT_ACCEPT_FAILED }
        }
        Err(s) => {
            // What the VMM says it converted is accepted, so those pages at least are known-good private memory.
            let done = if s.done > gpa { accept_range(gpa, s.done).err().unwrap_or(s.done) } else { s.done };
            let reach = s.asked.max(done);
            out.mark(gpa, done, PAGE_CONVERTED);
            out.mark(done, reach, PAGE_UNKNOWN);
            out.mark(reach, end, PAGE_UNCHANGED);
            s.result
        }
    }
}

#[no_mangle]
pub extern "C" fn tdxsim_accept(gpa: u64, size: u64, pages: *mut u8) -> i32 {
    let end = gpa + size;
    let out = Outcome { pages, start: gpa };
    let accepted = accept_range(gpa, end).err().unwrap_or(end);
    out.mark(gpa, accepted, PAGE_CONVERTED);
    out.mark(accepted, end, PAGE_UNKNOWN);
    if accepted == end { RESULT_OK } else { RESULT_ACCEPT_FAILED }
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    wasm32::unreachable()
}
