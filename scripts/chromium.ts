/**
 * Finds a system Chromium/Chrome for the browser tests and benchmarks. Never downloads a browser build:
 *  1. $CHROMIUM_PATH (or $CHROME_PATH) if set;
 *  2. `chromium`, `chromium-browser`, `google-chrome` or `google-chrome-stable` on PATH;
 *  3. on Debian (not Ubuntu, whose `chromium` package is only a snap shim): installs Debian's `chromium`
 *     package with apt, as `playwright install --with-deps` installs system packages;
 *  4. otherwise stops with the one command to run.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { accessSync, constants, existsSync, readFileSync } from 'node:fs';
import { delimiter, join } from 'node:path';

const NAMES = ['chromium', 'chromium-browser', 'google-chrome', 'google-chrome-stable'];

/** Flags that keep Chromium from phoning home (this machine's network is closed) and run it headless as root. */
export const CHROMIUM_ARGS = [
  '--headless=new',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-dev-shm-usage',
];

function executable(p: string): boolean {
  try {
    accessSync(p, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function onPath(): string | null {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    for (const n of NAMES) {
      const p = join(dir, n);
      if (executable(p)) return p;
    }
  }
  return null;
}

function isDebian(): boolean {
  if (!existsSync('/etc/debian_version')) return false;
  const osRelease = existsSync('/etc/os-release') ? readFileSync('/etc/os-release', 'utf8') : '';
  return /^ID=debian$/m.test(osRelease);
}

export function findChromium(): string | null {
  const fromEnv = process.env.CHROMIUM_PATH ?? process.env.CHROME_PATH;
  if (fromEnv) {
    if (!executable(fromEnv)) throw new Error(`CHROMIUM_PATH=${fromEnv} is not an executable file`);
    return fromEnv;
  }
  return onPath();
}

/** Returns the path of a usable Chromium, installing Debian's package if that is the only way. */
export function ensureChromium(log: (s: string) => void = (s) => process.stderr.write(`${s}\n`)): string {
  const found = findChromium();
  if (found) return found;
  if (!isDebian()) {
    throw new Error(
      'No Chromium or Chrome found for the browser tests. Install one with your system package manager ' +
        '(Debian: `sudo apt-get install -y chromium`), or set CHROMIUM_PATH to its executable.',
    );
  }
  const asRoot = process.getuid?.() === 0;
  const sudo = asRoot ? [] : ['sudo', '-n'];
  log("Browser tests: no Chromium found; installing Debian's `chromium` package with apt (about a minute)…");
  const run = (args: string[]) => {
    const [cmd, ...rest] = [...sudo, ...args];
    const r = spawnSync(cmd!, rest, {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
      encoding: 'utf8',
    });
    if (r.status !== 0) {
      throw new Error(
        `\`${[cmd, ...rest].join(' ')}\` failed (${r.stderr?.trim().split('\n').pop() ?? r.status}). ` +
          'Run `sudo apt-get update && sudo apt-get install -y chromium` yourself, or set CHROMIUM_PATH.',
      );
    }
  };
  run(['apt-get', 'update', '-qq']);
  run(['apt-get', 'install', '-y', '-qq', 'chromium']);
  const installed = findChromium();
  if (!installed) throw new Error('apt installed chromium but no executable was found on PATH');
  log(`Browser tests: using ${installed} (${execFileSync(installed, ['--version'], { encoding: 'utf8' }).trim()})`);
  return installed;
}
