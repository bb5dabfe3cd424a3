import type { BuildTdOptions, TdxModule, VmmFactory } from '@tdxsim/tdx-module';
import { TdxIds } from '@tdxsim/tdx-module';
import { ContainerModule } from 'inversify';
import { assertString } from '../../validation.js';
import { MirrorVmm } from './mirror-vmm.js';

/** One buggy-but-honest backend: it means well (never lies, never cheats) and has a concurrency bug. */
export interface BuggyVmm {
  /** Stable kebab-case name. */
  readonly name: string;
  /** What the backend is. */
  readonly description: string;
  /** The bug: what goes wrong, under which interleaving, and which check sees it. */
  readonly bug: string;
  /** Builds the TD on `module` and returns the buggy backend (not yet running: call `run()`). */
  create(module: TdxModule, build?: BuildTdOptions): Promise<MirrorVmm>;
  /** The same backend with the bug fixed: the control that shows a scenario passes without the bug. */
  createFixed(module: TdxModule, build?: BuildTdOptions): Promise<MirrorVmm>;
  /** Its {@link VmmFactory}, for composeTd and the explorer's scenarios. */
  factory(): VmmFactory;
  /** Its ContainerModule for `composeTd({ vmm })`. */
  module(): ContainerModule;
}

function entry(
  name: string,
  description: string,
  bug: string,
  create: (module: TdxModule, build: BuildTdOptions) => Promise<MirrorVmm>,
  createFixed: (module: TdxModule, build: BuildTdOptions) => Promise<MirrorVmm>,
): BuggyVmm {
  const factory = (): VmmFactory => async (module, build) => {
    const vmm = await create(module, build);
    return { vmm, td: vmm.td, run: () => vmm.run() };
  };
  return {
    name,
    description,
    bug,
    create: (module, build = {}) => create(module, build),
    createFixed: (module, build = {}) => createFixed(module, build),
    factory,
    module: () =>
      new ContainerModule(({ bind }) => {
        bind(TdxIds.VmmFactory).toConstantValue(factory());
      }),
  };
}

/**
 * Buggy-but-honest VMMs: backends with the races real VMMs have had, kept so that the explorer can be shown to find
 * them (and users can check their own tooling against them).
 */
export const buggyVmms: readonly BuggyVmm[] = [
  entry(
    'lockless-zap',
    'A KVM-like backend with a mirror S-EPT whose zap (mirror cleared, then BLOCK → TRACK → kick → REMOVE) takes no lock against concurrent faults (KVM without mmu_lock).',
    'A private fault that runs between a zap clearing its mirror entry and the REMOVE finds the S-EPT entry taken, records the page as present, and the zap then removes it: the mirror believes a page is mapped that the S-EPT no longer holds (the view check sees it; the guest later faults on that page for ever).',
    (module, build) => MirrorVmm.create(module, { mmuLock: false }, build),
    (module, build) => MirrorVmm.create(module, { mmuLock: true }, build),
  ),
];

/** The buggy backend called `name`, or undefined. */
export function buggyVmm(name: string): BuggyVmm | undefined {
  assertString('name', name);
  return buggyVmms.find((vmm) => vmm.name === name);
}
