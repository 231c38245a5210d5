/**
 * One table of figures for every reliability suite (Markdown, for the terminal and bench/RESULTS.md).
 * @module
 */

export interface SuiteResult {
  name: string;
  /** [figure, value] pairs in display order. */
  rows: [string, string][];
  /** Empty when the suite found nothing wrong. */
  failures: string[];
}

export function reportTable(results: readonly SuiteResult[]): string {
  const lines = ['| suite | figure | value |', '| --- | --- | ---: |'];
  for (const r of results) {
    for (const [k, v] of r.rows) lines.push(`| ${r.name} | ${k} | ${v} |`);
    lines.push(`| ${r.name} | **problems found** | ${r.failures.length} |`);
  }
  const problems = results.flatMap((r) => r.failures.map((f) => `- ${r.name}: ${f}`));
  return `${lines.join('\n')}\n${problems.length ? `\nProblems:\n${problems.join('\n')}\n` : ''}`;
}
