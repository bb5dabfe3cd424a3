import { builtinCatalog } from '../catalog/catalog.js';

/** Wraps a list of names at 100 columns, indented. */
function wrap(names: readonly string[], indent: string): string {
  const lines: string[] = [];
  let line = '';
  for (const name of names) {
    const next = line === '' ? name : `${line}, ${name}`;
    if (next.length + indent.length > 100 && line !== '') {
      lines.push(`${line},`);
      line = name;
    } else line = next;
  }
  if (line !== '') lines.push(line);
  return lines.map((l) => `${indent}${l}`).join('\n');
}

/** The valid values of --policy, --vmm and --workload, for a command's help. */
export function catalogHelp(): string {
  const catalog = builtinCatalog();
  const honest = catalog.vmms.filter((v) => v.kind === 'honest').map((v) => v.name);
  const hostile = catalog.vmms.filter((v) => v.kind === 'hostile').map((v) => v.name);
  return [
    'Guest policies (--policy):',
    wrap(catalog.policies, '  '),
    'Wasm guests (--guest file.wasm): guest code built against tdxsim.h of @tdxsim/wasm-guest, a row named after its file',
    'VMMs (--vmm), honest:',
    wrap(honest, '  '),
    'VMMs (--vmm), hostile (@tdxsim/testkit):',
    wrap(hostile, '  '),
    'Workloads (--workload):',
    ...catalog.workloads.map((w) => `  ${w.name.padEnd(11)} ${w.description}`),
  ].join('\n');
}
