/**
 * Structured JSON logs. Only the fields passed here are printed — never request bodies, headers, tokens,
 * keys or stack traces (rule 2).
 */
export type LogFields = Record<string, string | number | boolean | null | undefined>;

export function log(level: 'info' | 'warn' | 'error', event: string, fields: LogFields = {}): void {
  const line = JSON.stringify({ level, event, ...fields, ts: Date.now() });
  if (level === 'error') console.error(line);
  else if (level === 'warn') console.warn(line);
  else console.log(line);
}
