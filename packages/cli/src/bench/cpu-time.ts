/** The process's CPU time so far (user + system), in ms: what the benchmark measures, wall time being noise here. */
export function cpuNow(): number {
  const usage = process.cpuUsage();
  return (usage.user + usage.system) / 1000;
}
