/**
 * The protocol core's public surface: everything the client engine, the Worker, the bot SDK and the
 * benchmarks may use. Modules not re-exported here (kdf-chains, header, skipped-keys, ratchet, padding)
 * are internals of sessions and sender keys.
 *
 * The core does no I/O, reads no clock and draws no global randomness: callers pass `curves`
 * (`defaultCurves()`), an `Rng` and `now`. Specification: docs/PROTOCOL.md.
 * @module
 */
export {
  type AccountKeys,
  accountKeys,
  DEVICE_NAME_SEALED_LEN,
  openDeviceName,
  sealDeviceName,
  selfConversationId,
} from './account-keys.js';
export {
  AttachmentDecryptor,
  AttachmentEncryptor,
  type AttachmentLayout,
  attachmentLayout,
  decryptAttachment,
  encryptAttachment,
  generateAttachmentKey,
} from './attachments.js';
export { fromB64u, fromHex, toB64u, toHex } from './bytes.js';
export * as constants from './constants.js';
export {
  ACTION_TYPES,
  type AttContent,
  CONTENT_TYPES,
  type Content,
  type ContentType,
  type DecodedContent,
  type DeleteContent,
  type DistributionContent,
  decodeContent,
  decodeJson,
  type EditContent,
  encodeContent,
  encodeJson,
  isReaction,
  isTimerSeconds,
  type ProfileKeyContent,
  type Quote,
  quoteExcerpt,
  type ReactContent,
  type ReceiptContent,
  type TextContent,
  type TypingContent,
} from './content.js';
export { ErrorCode, is, ProtocolError, publicDecryptError } from './errors.js';
export {
  compareScanned,
  decodeScannable,
  fingerprintKeyBytes,
  type SafetyNumber,
  safetyNumber,
} from './fingerprint.js';
export {
  decodeHistoryRecords,
  encodeHistoryRecord,
  HISTORY_STATUSES,
  type HistoryMessage,
  type HistoryReadPosition,
  type HistoryRecord,
  type HistoryStatus,
  packHistory,
} from './history.js';
export {
  type DeviceCertificate,
  type DeviceKeyResolver,
  type DeviceList,
  decodeDeviceCertificate,
  decodeDeviceList,
  deviceKeyResolver,
  encodeDeviceCertificate,
  encodeDeviceList,
  encryptableDevices,
  findDevice,
  issueDeviceCertificate,
  signDeviceList,
  signLoginChallenge,
  type VerifiedDevice,
  type VerifiedDeviceList,
  verifyDeviceCertificate,
  verifyDeviceList,
  verifyDeviceListUpdate,
  verifyLoginChallenge,
} from './identity.js';
export {
  ed25519FromSecret,
  generateEd25519,
  generateX25519,
  type OurEd25519KeyPair,
  type OurX25519KeyPair,
  type TheirEd25519Key,
  type TheirX25519Key,
  theirEd25519,
  theirX25519,
  x25519FromSecret,
} from './keys.js';
export {
  canonicalOrigin,
  channelIdBytes,
  channelIdString,
  decodeLinkCode,
  encodeLinkCode,
  type LinkCode,
} from './link-code.js';
export {
  ACTIONS,
  type Action,
  applyEntry,
  canPerform,
  canSetTimer,
  decodeMembershipEntry,
  encodeMembershipEntry,
  entryHash,
  type MembershipEntry,
  type MembershipState,
  nextEntry,
  ROLE_ACTIONS,
  ROLES,
  type Role,
  verifyLog,
} from './membership.js';
export { passwordPrehash, passwordSalt } from './password.js';
export type { PqxdhLocalIdentity, PqxdhResponderKeys } from './pqxdh.js';
export {
  decodeBundle,
  decodePrekeyUpload,
  encodeBundle,
  encodePrekeyUpload,
  generateKemPrekey,
  generateOneTimePrekeys,
  generateSignedPrekey,
  type KemPrekeyRecord,
  kemPrekeyPublic,
  type OneTimePrekeyRecord,
  oneTimePrekeyPublic,
  type PrekeyBundle,
  type PrekeyUpload,
  type SignedPrekeyRecord,
  signedPrekeyPublic,
  type VerifiedBundle,
  verifyBundle,
  verifyKemPrekey,
  verifyPrekeyUpload,
  verifySignedPrekey,
} from './prekeys.js';
export {
  type Curve25519,
  defaultCurves,
  nobleCurves,
  type Rng,
  type Sha256Stream,
  sha256Stream,
  webCryptoCurves,
} from './primitives.js';
export {
  openPrivateSettings,
  type PrivateSettings,
  privateSettingsKey,
  SEALED_SETTINGS_LENGTHS,
  SETTING_KIND,
  type SettingEntry,
  sealedSettingsRevision,
  sealPrivateSettings,
} from './private-settings.js';
export {
  type Avatar,
  type AvatarType,
  avatarMagicMatches,
  decodeProfileKeyMessage,
  displayNameProblem,
  encodeProfileKeyMessage,
  generateProfileKey,
  isSealedProfileShape,
  openProfile,
  PROFILE_KEY_MESSAGE_LEN,
  type ProfileContent,
  type ProfileKeyMessage,
  SEALED_PROFILE_LENGTHS,
  sealProfile,
} from './profile.js';
export {
  linkingChallenge,
  MAX_PROVISIONING_LEN,
  type OpenedProvisioning,
  openProvisioning,
  type ProvisioningContact,
  type ProvisioningContent,
  sealProvisioning,
} from './provisioning.js';
export {
  createSenderKey,
  decodeSenderKeyDistribution,
  deserializeOwnSenderKey,
  deserializeSenderKeyRecord,
  emptySenderKeyRecord,
  encodeSenderKeyDistribution,
  type OwnSenderKey,
  processSenderKeyDistribution,
  type SenderKeyDistribution,
  type SenderKeyRecord,
  senderDecrypt,
  senderEncrypt,
  senderKeyDistribution,
  serializeOwnSenderKey,
  serializeSenderKeyRecord,
} from './sender-keys.js';
export {
  assertNotStale,
  type DecryptContext,
  type DecryptResult,
  decodeMessage,
  decrypt,
  deserializeSessionRecord,
  emptySessionRecord,
  encodeMessage,
  encrypt,
  initiateSession,
  isSessionExpired,
  MessageType,
  type SessionRecord,
  serializeSessionRecord,
} from './session.js';
export {
  Direction,
  MAX_TRANSFER_FRAME_LEN,
  openTransferFrame,
  sealTransferFrame,
  TRANSFER_STATUSES,
  type TransferFrame,
  type TransferKeys,
  type TransferStatus,
  transferKeys,
} from './transfer.js';
