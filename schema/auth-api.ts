/**
 * Auth REST API shapes (docs/API.md § "Auth (REST)"), shared by the Worker (worker/routes/auth.ts) and the
 * web client. zod only — no Worker imports — so the browser bundle can use it.
 *
 * Binary fields are base64url without padding; the server decodes them to bytes (`z.output`), the client
 * sends strings (`z.input`).
 */
import { z } from 'zod';
import { fromB64u } from '../web/src/protocol/bytes.js';

// ---- usernames -------------------------------------------------------------------------------------------

export const USERNAME_MIN_LEN = 3;
export const USERNAME_MAX_LEN = 32;
/**
 * After normalisation a username is 3–32 characters of `a-z`, `0-9`, `_`, `.`, `-`, starting with a
 * letter. ASCII only on purpose: no homoglyphs (Cyrillic "а" vs Latin "a"), no invisible characters, and
 * the same salt derivation (web/src/protocol/password.ts) on every client.
 */
export const USERNAME_PATTERN = /^[a-z][a-z0-9_.-]{2,31}$/;

/**
 * NFKC, then case-folding (String.prototype.toLowerCase, locale-independent), then the character-set check.
 * Full-width and compatibility forms fold to ASCII first ("Ａｌｉｃｅ" → "alice"); anything outside the
 * set afterwards is refused. Returns null for an invalid username (the server answers 400
 * `invalid_username`).
 */
export function normalizeUsername(raw: string): string | null {
  if (typeof raw !== 'string' || raw.length > 4 * USERNAME_MAX_LEN) return null;
  const n = raw.normalize('NFKC').toLowerCase();
  return USERNAME_PATTERN.test(n) ? n : null;
}

// ---- field types ---------------------------------------------------------------------------------------

/** base64url (no padding) of exactly `len` bytes (or at most `max`), decoded to bytes. */
export const b64u = (opts: { len?: number; max?: number }) =>
  z
    .string()
    .max(Math.ceil(((opts.len ?? opts.max ?? 0) * 4) / 3) + 2)
    .regex(/^[A-Za-z0-9_-]*$/)
    .transform((s, ctx) => {
      let b: Uint8Array;
      try {
        b = fromB64u(s);
      } catch {
        ctx.addIssue({ code: 'custom', message: 'invalid base64url' });
        return z.NEVER;
      }
      if ((opts.len !== undefined && b.length !== opts.len) || (opts.max !== undefined && b.length > opts.max)) {
        ctx.addIssue({ code: 'custom', message: 'wrong length' });
        return z.NEVER;
      }
      return b;
    });

/** Ids we mint or accept: 1–64 of [A-Za-z0-9_-] (the protocol core's MAX_ID_LEN). */
export const authId = z.string().regex(/^[A-Za-z0-9_-]{1,64}$/);
/** Raw username as typed; normalised by the server with normalizeUsername. */
export const rawUsername = z
  .string()
  .min(1)
  .max(4 * USERNAME_MAX_LEN);
/** The client's argon2id pre-hash (web/src/protocol/password.ts): 32 bytes. */
export const prehash = b64u({ len: 32 });
/** Opaque server-issued tokens (challenge ids, MFA tokens, refresh tokens): 32 random bytes, base64url. */
export const opaqueToken = z.string().regex(/^[A-Za-z0-9_-]{43}$/);
export const totpCode = z.string().regex(/^[0-9]{6}$/);
/** Recovery codes as shown ("abcd-efgh-jkmn-pqrs"); spaces, dashes and case are ignored. */
export const recoveryCode = z.string().min(16).max(40);
/** An encoded signed device list (≤ 10 certificates ≈ 3 KB). */
export const deviceListBytes = b64u({ max: 4096 });
export const signature = b64u({ len: 64 });

// ---- requests ------------------------------------------------------------------------------------------

export const registerRequest = z.strictObject({
  userId: authId,
  username: rawUsername,
  passwordPrehash: prehash,
  userIdentityKey: b64u({ len: 32 }),
  deviceList: deviceListBytes,
  deviceId: authId,
  challengeId: opaqueToken,
  challengeSignature: signature,
});

export const loginRequest = z.strictObject({
  username: rawUsername,
  passwordPrehash: prehash,
  deviceId: authId,
  challengeId: opaqueToken,
  challengeSignature: signature,
});

/** Exactly one of `code` and `recoveryCode`. */
const secondFactor = {
  code: totpCode.optional(),
  recoveryCode: recoveryCode.optional(),
};
const oneFactor = (v: { code?: string | undefined; recoveryCode?: string | undefined }) =>
  (v.code === undefined) !== (v.recoveryCode === undefined);

export const totpLoginRequest = z
  .strictObject({ mfaToken: opaqueToken, ...secondFactor })
  .refine(oneFactor, { message: 'give exactly one of code and recoveryCode', path: ['code'] });

export const totpCodeRequest = z.strictObject({ code: totpCode });

export const passwordChangeRequest = z.strictObject({ currentPrehash: prehash, newPrehash: prehash });

/** TOTP enrolment re-proves the password: a stolen access token alone cannot put a second factor on the account. */
export const totpEnrollRequest = z.strictObject({ currentPrehash: prehash });

export const revokeSessionRequest = z.strictObject({ deviceId: authId });

/**
 * Identity reset: a new user identity key and a new one-device list signed by it (version = previous + 1).
 * If the account has TOTP enabled, a `code` or `recoveryCode` is required as well.
 */
export const resetIdentityRequest = z
  .strictObject({
    username: rawUsername,
    passwordPrehash: prehash,
    userIdentityKey: b64u({ len: 32 }),
    deviceList: deviceListBytes,
    deviceId: authId,
    challengeId: opaqueToken,
    challengeSignature: signature,
    ...secondFactor,
  })
  .refine((v) => v.code === undefined || v.recoveryCode === undefined, {
    message: 'give at most one of code and recoveryCode',
    path: ['code'],
  });

// ---- responses -----------------------------------------------------------------------------------------

export const challengeResponse = z.object({
  challengeId: opaqueToken,
  /** 32 bytes, base64url: what the device signs with signLoginChallenge. */
  challenge: z.string(),
  /** Milliseconds since the epoch. */
  expiresAt: z.number().int(),
});

/** Successful sign-in / refresh. The refresh token travels only in the `__Host-e2e_refresh` cookie. */
export const tokenResponse = z.object({
  accessToken: z.string(),
  /** Seconds. */
  expiresIn: z.number().int(),
  userId: z.string(),
  deviceId: z.string(),
});

export const mfaRequiredResponse = z.object({ mfaRequired: z.literal(true), mfaToken: opaqueToken });

export const loginResponse = z.union([tokenResponse, mfaRequiredResponse]);

export const sessionResponse = z.object({
  userId: z.string(),
  deviceId: z.string(),
  username: z.string(),
  identityVersion: z.number().int(),
  totpEnabled: z.boolean(),
});

export const totpEnrollResponse = z.object({ otpauthUri: z.string(), secret: z.string() });
export const recoveryCodesResponse = z.object({ recoveryCodes: z.array(z.string()) });
export const okResponse = z.object({ ok: z.literal(true) });
export const revokedResponse = z.object({ ok: z.literal(true), revokedSessions: z.number().int() });

export const errorResponse = z.object({
  error: z.object({ code: z.string(), message: z.string() }).catchall(z.unknown()),
});

export type RegisterRequest = z.input<typeof registerRequest>;
export type LoginRequest = z.input<typeof loginRequest>;
export type TotpLoginRequest = z.input<typeof totpLoginRequest>;
export type ResetIdentityRequest = z.input<typeof resetIdentityRequest>;
export type TokenResponse = z.infer<typeof tokenResponse>;
export type LoginResponse = z.infer<typeof loginResponse>;

// ---- Account deletion (issue 18; worker/routes/account.ts) ---------------------------------------------------

/**
 * POST /api/account/delete. `leave`: per group conversation the caller is in, the membership entries its
 * device signed to leave it (a `leave`, preceded by `transfer_ownership` when it is the owner and others
 * remain), appended in order before anything is deleted. `code` is required when TOTP is on.
 */
export const accountDeleteRequest = z.strictObject({
  passwordPrehash: prehash,
  code: totpCode.optional(),
  recoveryCode: recoveryCode.optional(),
  leave: z
    .array(
      z.strictObject({
        conversationId: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/),
        entries: z
          .array(b64u({ max: 8192 }))
          .min(1)
          .max(2),
      }),
    )
    .max(1000),
});
export type AccountDeleteRequest = z.input<typeof accountDeleteRequest>;

/**
 * One page of `GET /api/account/export[?cursor=…]`: `tables` holds this page's rows of each table (each table
 * at most EXPORT_ROWS_PER_TABLE rows, the page at most EXPORT_PAGE_BYTES of row JSON: worker/domain/account.ts).
 * `truncated: true` means rows are left: ask again with `cursor=next` and append each table's rows; the last
 * page has `truncated: false, next: null`.
 */
export interface AccountExportPage {
  format: 'e2e-chat account export';
  version: 1;
  userId: string;
  exportedAt: string;
  tables: Record<string, Record<string, unknown>[]>;
  truncated: boolean;
  next: string | null;
}
/** `GET /api/account/export` query: the `next` of the previous page (base64url, opaque). */
export const accountExportQuery = z.strictObject({
  cursor: z
    .string()
    .max(4096)
    .regex(/^[A-Za-z0-9_-]+$/)
    .optional(),
});
