/*
 * kernel-guest-no-r11-check.c - kernel-guest.c with the classic defect: R11, the resume address the untrusted VMM
 * returns with RETRY, is followed without checking that it lies inside the request. A VMM that answers R11 past the
 * end makes this guest report pages converted that nobody converted; one that answers R11 below the start makes it
 * loop. tdxsim finds both (see the package README).
 */
#define TDXSIM_EXAMPLE_OMIT_R11_CHECK
#include "kernel-guest.c"
