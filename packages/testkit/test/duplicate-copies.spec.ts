import { cpSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { TdGuest } from '@tdxsim/guest';
import { KvmVmm, kvmVmm } from '@tdxsim/host-kvm';
import * as ours from '@tdxsim/tdx-module';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/**
 * Two real copies of @tdxsim/tdx-module in one process, as a user gets when two packages each install their own:
 * the workspace's (used by guest and host-kvm) and a second one copied to a temporary directory and imported from
 * there. Objects of one copy given to the code of the other are reported as such.
 */
const PACKAGE = fileURLToPath(new URL('../../tdx-module/', import.meta.url));
let dir: string;
let theirs: typeof ours;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'tdxsim-second-copy-'));
  cpSync(join(PACKAGE, 'src'), join(dir, 'src'), { recursive: true });
  cpSync(join(PACKAGE, 'package.json'), join(dir, 'package.json'));
  // Its dependencies (debug, inversify) resolve as they would beside a second install.
  symlinkSync(join(PACKAGE, 'node_modules'), join(dir, 'node_modules'), 'dir');
  theirs = (await import(pathToFileURL(join(dir, 'src', 'index.ts')).href)) as typeof ours;
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

function duplicateError(error: unknown): ours.TdxSimError {
  expect(ours.TdxSimError.is(error)).toBe(true);
  const typed = error as ours.TdxSimError;
  expect(typed.code).toBe('DUPLICATE_PACKAGE');
  return typed;
}

describe('two copies of @tdxsim/tdx-module in one process', () => {
  it('each copy registered itself at load, with its location and version', () => {
    expect(theirs.TdxModule).not.toBe(ours.TdxModule);
    const locations = ours.loadedCopies().map((copy) => copy.location);
    expect(locations).toContain(PACKAGE);
    expect(locations.some((location) => location.startsWith(dir))).toBe(true);
    expect(theirs.loadedCopies()).toEqual(ours.loadedCopies());
    expect(new Set(ours.loadedCopies().map((copy) => copy.version))).toEqual(new Set(['0.1.0']));
  });

  it("a TdxModule of one copy given to the other's buildTd fails before any SEAMCALL, naming both copies", async () => {
    const module = new theirs.TdxModule();
    const error = duplicateError(await ours.buildTd(module).catch((e: unknown) => e));
    expect(error.argument).toBe('module');
    expect(error.message).toContain(`TdxModule from another copy of @tdxsim/tdx-module (0.1.0 at ${dir}`);
    expect(error.message).toContain(`than the code it was given to (0.1.0 at ${PACKAGE})`);
    expect(error.message).toContain('npm ls @tdxsim/tdx-module');
    // Nothing happened to the foreign module: it still builds a TD with its own copy.
    const td = await theirs.buildTd(module);
    expect(theirs.checkInvariants(module)).toEqual([]);
    expect(() => ours.checkInvariants(module)).toThrow(/another copy/);
    expect(td.tdvprs).toHaveLength(1);
  });

  it("composeTd of one copy with a backend package built on the other fails with the backend's buildTd naming it", async () => {
    const error = duplicateError(await theirs.composeTd({ vmm: kvmVmm() }).catch((e: unknown) => e));
    expect(error.message).toMatch(/^module is a TdxModule from another copy/);
  });

  it('a GuestCpu of one copy given to a guest built on the other fails at boot', async () => {
    const module = new theirs.TdxModule();
    const td = await theirs.buildTd(module);
    const error = duplicateError(
      await TdGuest.boot(td.guest(0), { memoryBytes: 2 ** 30 }).catch((e: unknown) => e),
    );
    expect(error.argument).toBe('cpus');
    expect(error.message).toMatch(/^cpus is a GuestCpu from another copy/);
  });

  it('KvmVmm.adopt refuses a module, or a TD handle, of the other copy: TD_NOT_ADOPTABLE naming it', async () => {
    const foreign = new theirs.TdxModule();
    const foreignTd = await theirs.buildTd(foreign);
    await expect(KvmVmm.adopt(foreign as never, foreignTd as never)).rejects.toMatchObject({
      code: 'TD_NOT_ADOPTABLE',
      argument: 'module',
    });
    const module = new ours.TdxModule();
    await expect(KvmVmm.adopt(module, foreignTd as never)).rejects.toMatchObject({
      code: 'TD_NOT_ADOPTABLE',
      argument: 'td',
    });
  });

  it('errors stay recognisable across copies (a brand, not instanceof)', () => {
    const misuse = (() => {
      try {
        new theirs.TdxModule({ maxHkid: 0 });
      } catch (e) {
        return e;
      }
    })();
    expect(misuse instanceof ours.TdxSimError).toBe(false);
    expect(ours.TdxSimError.is(misuse)).toBe(true);
  });
});
