/**
 * `KvmVmm.create`'s initial image: KVM adds it itself (KVM_TDX_INIT_MEM_REGION), so the module's builder never checks
 * it; a malformed one is a typed KvmError naming the entry, never a TypeError, and a page of more than 4096 bytes is
 * refused (it was cut at 4 KiB without a word).
 */
import { TdxModule } from '@tdxsim/tdx-module';
import { describe, expect, it } from 'vitest';
import { KvmError, KvmVmm } from '../src/index.js';

const TDMR = { base: 2 ** 40, size: 2 ** 30 } as const;

describe('KvmVmm.create: the initial image', () => {
  it.each([
    ['not an array', 'img', 'build.initialImage'],
    ['an entry that is null', [null], 'build.initialImage[0]'],
    ['bytes that are not a Uint8Array', [{ gpa: 0x1000, bytes: [1, 2] }], 'build.initialImage[0].bytes'],
    ['a page of 4097 bytes', [{ gpa: 0x1000, bytes: new Uint8Array(4097) }], 'build.initialImage[0].bytes'],
  ])('refuses %s with INVALID_ARGUMENT naming it', async (_what, image, argument) => {
    const module = new TdxModule({ tdmr: TDMR });
    const error = await KvmVmm.create(module, {}, { initialImage: image as never }).catch((e: unknown) => e);
    expect(KvmError.is(error), String(error)).toBe(true);
    expect(error).toMatchObject({ code: 'INVALID_ARGUMENT', argument });
  });

  it('takes a page of exactly 4096 bytes', async () => {
    const module = new TdxModule({ tdmr: TDMR });
    const bytes = new Uint8Array(4096).fill(0x5a);
    await expect(
      KvmVmm.create(module, {}, { initialImage: [{ gpa: 0x1000, bytes }] }),
    ).resolves.toBeInstanceOf(KvmVmm);
  });
});
