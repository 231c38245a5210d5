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
  /** An optional second table (Markdown), e.g. the bad-input suite's figures per surface. */
  detail?: string;
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

/** The suites' second tables, each under its suite's name. */
export function reportDetails(results: readonly SuiteResult[]): string {
  return results
    .filter((r) => r.detail)
    .map((r) => `### ${r.name}: per surface\n\n${r.detail}\n`)
    .join('\n');
}
