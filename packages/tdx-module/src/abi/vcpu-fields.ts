/**
 * TDVPS metadata fields the model answers with TDH.VP.RD.
 * Source: intel/tdx-module 1.5.01 include/auto_gen/tdvps_fields_lookup.h (MD_TDVPS_VCPU_STATE_DETAILS_FIELD_ID),
 * src/common/data_structures/tdx_tdvps.h (vcpu_state_t: bit 0 VMXIP); Linux arch/x86/kvm/vmx/tdx.c reads it in
 * tdx_protected_apic_has_interrupt.
 */

/** VCPU_STATE_DETAILS (guest-state class, computed on read): whether a virtual interrupt is pending. */
export const VCPU_STATE_DETAILS_FIELD_ID = 0x9120000300000100n;

/** Bit 0 of VCPU_STATE_DETAILS: a virtual interrupt is pending above the processor priority (RVI > PPR). */
export const VCPU_STATE_DETAILS_VMXIP = 1n;
