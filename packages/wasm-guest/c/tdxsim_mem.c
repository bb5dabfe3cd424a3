/*
 * tdxsim_mem.c - the four memory functions a freestanding wasm32 build needs: clang emits calls to them for
 * struct copies and zeroing even without a libc. Byte loops: guests convert memory, they do not copy much of it.
 */
#include "tdxsim.h"

void *memset(void *dst, int value, tdxsim_size_t length) {
  unsigned char *d = dst;
  while (length-- > 0) *d++ = (unsigned char)value;
  return dst;
}

void *memcpy(void *dst, const void *src, tdxsim_size_t length) {
  unsigned char *d = dst;
  const unsigned char *s = src;
  while (length-- > 0) *d++ = *s++;
  return dst;
}

void *memmove(void *dst, const void *src, tdxsim_size_t length) {
  unsigned char *d = dst;
  const unsigned char *s = src;
  if (d < s) {
    while (length-- > 0) *d++ = *s++;
  } else {
    d += length;
    s += length;
    while (length-- > 0) *--d = *--s;
  }
  return dst;
}

int memcmp(const void *a, const void *b, tdxsim_size_t length) {
  const unsigned char *x = a;
  const unsigned char *y = b;
  for (; length > 0; length--, x++, y++) {
    if (*x != *y) return *x < *y ? -1 : 1;
  }
  return 0;
}
