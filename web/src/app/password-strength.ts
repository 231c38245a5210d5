/**
 * Password strength for the register and change-password forms: zxcvbn-ts (pattern matching against common
 * passwords, names, words, dates, keyboard walks and l33t) with the common and English dictionaries. It is
 * large (the dictionaries), so it is loaded lazily — only the screens that ask for a new password import
 * this module, and only when they open — and the first page does not grow.
 *
 * Rule: a new password needs at least MIN_PASSWORD characters AND a zxcvbn score of at least MIN_SCORE
 * (3: "safely unguessable: moderate protection from offline slow-hash scenario"; the server stores an
 * argon2id pre-hash hashed again, so an offline attack is slow). The username is given as a user input, so
 * "alice2024alice" scores low for alice.
 *
 * Does NOT: leave the device (the password is checked here, never sent anywhere for the check).
 * @module
 */
import { ZxcvbnFactory } from '@zxcvbn-ts/core';
import * as common from '@zxcvbn-ts/language-common';
import * as en from '@zxcvbn-ts/language-en';
import { MIN_PASSWORD } from './logic.js';

export const MIN_SCORE = 3;

const zxcvbn = new ZxcvbnFactory({
  translations: en.translations,
  graphs: common.adjacencyGraphs,
  dictionary: { ...common.dictionary, ...en.dictionary },
});

export interface Strength {
  /** 0 (too guessable) … 4 (very unguessable). */
  readonly score: 0 | 1 | 2 | 3 | 4;
  readonly ok: boolean;
  /** Why it is weak, in words (empty when it is fine). */
  readonly reason: string;
  readonly suggestions: readonly string[];
}

export function checkPassword(password: string, userInputs: readonly string[] = []): Strength {
  if (password.length < MIN_PASSWORD)
    return { score: 0, ok: false, reason: `At least ${MIN_PASSWORD} characters.`, suggestions: [] };
  const r = zxcvbn.check(password, [...userInputs]);
  const ok = r.score >= MIN_SCORE;
  const reason = ok
    ? ''
    : r.feedback.warning || 'Easy to guess. Add a few more words or characters that do not follow a pattern.';
  return { score: r.score as Strength['score'], ok, reason, suggestions: ok ? [] : r.feedback.suggestions };
}
