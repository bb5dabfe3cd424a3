import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

// A backend knows only what a real VMM could know: SEAMCALL results, TD exits and its own tables. The module's
// introspection (the S-EPT and PAMT it holds, its invariant checker, the truth about a GPA) is for tests and
// checkers, never for the backend's decisions. This scans the package's sources for any use of it.

const SRC = join(import.meta.dirname, '..', 'src');

/** Ways into the module's truth, and why each is off limits. */
const FORBIDDEN: readonly [RegExp, string][] = [
  [/\bprivatePage\s*\(/, 'module.privatePage: the S-EPT as the module holds it'],
  [/\bensureSeptTables\b/, 'ensureSeptTables decides from module.privatePage'],
  [/\.state\b(?!\s*[:=])/, 'module.state: the module’s internal state'],
  [/\bsnapshotState\b/, 'a snapshot of the module’s state'],
  [/\b(check|assert)Invariants\b/, 'the invariant checker reads the module’s state'],
  [/\bcheckVmmView\b/, 'the view checker reads the S-EPT'],
  [/\.lookup\s*\(|\.entries\s*\(\s*\)/, 'reading the shared EPT back instead of KVM’s own record'],
  [/\bdroppedHostWrites\b/, 'a module diagnostic'],
];

/** The source without comments (so that a comment may name what the code must not do). */
function code(text: string): string {
  return text.replace(/\/\*[\s\S]*?\*\//g, '').replace(/(^|[^:'"`])\/\/.*$/gm, '$1');
}

function uses(text: string): string[] {
  const found: string[] = [];
  const lines = code(text).split('\n');
  lines.forEach((line, index) => {
    for (const [pattern, why] of FORBIDDEN)
      if (pattern.test(line)) found.push(`${index + 1}: ${why}: ${line.trim()}`);
  });
  return found;
}

describe('host-kvm looks into the module only through SEAMCALLs and TD exits', () => {
  const files = readdirSync(SRC).filter((name) => name.endsWith('.ts'));

  it('the scan sees every source file', () => {
    expect(files).toEqual(
      expect.arrayContaining([
        'fault.ts',
        'zap.ts',
        'mirror-sept.ts',
        'kvm-vmm.ts',
        'memory.ts',
        'td-build.ts',
      ]),
    );
  });

  it.each(files)('%s uses none of the module’s truth', (name) => {
    expect(uses(readFileSync(join(SRC, name), 'utf8'))).toEqual([]);
  });

  it('the scan would catch each way in', () => {
    for (const line of [
      'const truth = this.module.privatePage(td.tdr, gpa);',
      'await ensureSeptTables(module, host, allocator, tdr, gpa, 0, pwl);',
      'if (module.state.pamt.getType(page, 0) !== 3) {}',
      'assertInvariants(module);',
      'const hpa = ept.lookup(gpa);',
    ])
      expect(uses(line)).toHaveLength(1);
    // Comments may name them.
    expect(uses('// never module.privatePage(...)\n/* nor module.state */')).toEqual([]);
  });
});
