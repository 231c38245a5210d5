CREATE TABLE `audit_events` (
	`id` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
	`at` integer DEFAULT (unixepoch() * 1000) NOT NULL,
	`event` text NOT NULL,
	`user_id` text,
	`device_id` text,
	`client_hash` text,
	`details` text
);
--> statement-breakpoint
CREATE INDEX `audit_events_user_idx` ON `audit_events` (`user_id`,`at`);--> statement-breakpoint
CREATE TABLE `conversations` (
	`id` text PRIMARY KEY NOT NULL,
	`kind` text NOT NULL,
	`head_seq` integer NOT NULL,
	`head_hash` blob NOT NULL,
	`created_at` integer DEFAULT (unixepoch() * 1000) NOT NULL
);
--> statement-breakpoint
CREATE TABLE `device_lists` (
	`user_id` text PRIMARY KEY NOT NULL,
	`version` integer NOT NULL,
	`list` blob NOT NULL,
	`updated_at` integer DEFAULT (unixepoch() * 1000) NOT NULL,
	FOREIGN KEY (`user_id`) REFERENCES `users`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE TABLE `devices` (
	`user_id` text NOT NULL,
	`device_id` text NOT NULL,
	`certificate` blob NOT NULL,
	`signing_key` blob NOT NULL,
	`identity_key` blob NOT NULL,
	`created_at` integer DEFAULT (unixepoch() * 1000) NOT NULL,
	`last_seen_at` integer,
	`revoked_at` integer,
	PRIMARY KEY(`user_id`, `device_id`),
	FOREIGN KEY (`user_id`) REFERENCES `users`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE TABLE `group_envelopes` (
	`conversation_id` text NOT NULL,
	`seq` integer NOT NULL,
	`ciphertext` blob NOT NULL,
	`expires_at` integer NOT NULL,
	PRIMARY KEY(`conversation_id`, `seq`)
);
--> statement-breakpoint
CREATE INDEX `group_envelopes_expiry_idx` ON `group_envelopes` (`expires_at`);--> statement-breakpoint
CREATE TABLE `kem_prekeys` (
	`user_id` text NOT NULL,
	`device_id` text NOT NULL,
	`key_id` integer NOT NULL,
	`public_key` blob NOT NULL,
	`signature` blob NOT NULL,
	`last_resort` integer NOT NULL,
	`created_at` integer DEFAULT (unixepoch() * 1000) NOT NULL,
	PRIMARY KEY(`user_id`, `device_id`, `key_id`)
);
--> statement-breakpoint
CREATE INDEX `kem_prekeys_claim_idx` ON `kem_prekeys` (`user_id`,`device_id`,`last_resort`);--> statement-breakpoint
CREATE TABLE `login_challenges` (
	`id_hash` blob PRIMARY KEY NOT NULL,
	`expires_at` integer NOT NULL
);
--> statement-breakpoint
CREATE INDEX `login_challenges_expiry_idx` ON `login_challenges` (`expires_at`);--> statement-breakpoint
CREATE TABLE `mailbox` (
	`user_id` text NOT NULL,
	`device_id` text NOT NULL,
	`conversation_id` text NOT NULL,
	`seq` integer NOT NULL,
	`ts` integer NOT NULL,
	`sender_user_id` text NOT NULL,
	`sender_device_id` text NOT NULL,
	`client_msg_id` text NOT NULL,
	`kind` text NOT NULL,
	`status` text,
	`ciphertext` blob,
	`expires_at` integer NOT NULL,
	PRIMARY KEY(`user_id`, `device_id`, `conversation_id`, `seq`)
);
--> statement-breakpoint
CREATE INDEX `mailbox_expiry_idx` ON `mailbox` (`expires_at`);--> statement-breakpoint
CREATE INDEX `mailbox_conv_seq_idx` ON `mailbox` (`conversation_id`,`seq`);--> statement-breakpoint
CREATE TABLE `members` (
	`conversation_id` text NOT NULL,
	`user_id` text NOT NULL,
	`role` text NOT NULL,
	`joined_seq` integer NOT NULL,
	PRIMARY KEY(`conversation_id`, `user_id`),
	FOREIGN KEY (`conversation_id`) REFERENCES `conversations`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE INDEX `members_user_idx` ON `members` (`user_id`);--> statement-breakpoint
CREATE TABLE `membership_log` (
	`conversation_id` text NOT NULL,
	`seq` integer NOT NULL,
	`entry` blob NOT NULL,
	`entry_hash` blob NOT NULL,
	`author_user_id` text NOT NULL,
	`author_device_id` text NOT NULL,
	`created_at` integer DEFAULT (unixepoch() * 1000) NOT NULL,
	PRIMARY KEY(`conversation_id`, `seq`),
	FOREIGN KEY (`conversation_id`) REFERENCES `conversations`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE TABLE `mfa_pending` (
	`token_hash` blob PRIMARY KEY NOT NULL,
	`user_id` text NOT NULL,
	`device_id` text NOT NULL,
	`expires_at` integer NOT NULL,
	FOREIGN KEY (`user_id`) REFERENCES `users`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE INDEX `mfa_pending_user_idx` ON `mfa_pending` (`user_id`);--> statement-breakpoint
CREATE INDEX `mfa_pending_expiry_idx` ON `mfa_pending` (`expires_at`);--> statement-breakpoint
CREATE TABLE `one_time_prekeys` (
	`user_id` text NOT NULL,
	`device_id` text NOT NULL,
	`key_id` integer NOT NULL,
	`public_key` blob NOT NULL,
	PRIMARY KEY(`user_id`, `device_id`, `key_id`)
);
--> statement-breakpoint
CREATE TABLE `recovery_codes` (
	`code_hash` blob PRIMARY KEY NOT NULL,
	`user_id` text NOT NULL,
	`used_at` integer,
	FOREIGN KEY (`user_id`) REFERENCES `users`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE INDEX `recovery_codes_user_idx` ON `recovery_codes` (`user_id`);--> statement-breakpoint
CREATE TABLE `refresh_tokens` (
	`token_hash` blob PRIMARY KEY NOT NULL,
	`family_id` text NOT NULL,
	`created_at` integer DEFAULT (unixepoch() * 1000) NOT NULL,
	`expires_at` integer NOT NULL,
	`rotated_at` integer,
	`grace_used_at` integer,
	FOREIGN KEY (`family_id`) REFERENCES `token_families`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE INDEX `refresh_tokens_family_idx` ON `refresh_tokens` (`family_id`);--> statement-breakpoint
CREATE TABLE `signed_prekeys` (
	`user_id` text NOT NULL,
	`device_id` text NOT NULL,
	`key_id` integer NOT NULL,
	`public_key` blob NOT NULL,
	`signature` blob NOT NULL,
	`created_at` integer DEFAULT (unixepoch() * 1000) NOT NULL,
	PRIMARY KEY(`user_id`, `device_id`, `key_id`)
);
--> statement-breakpoint
CREATE TABLE `token_families` (
	`id` text PRIMARY KEY NOT NULL,
	`user_id` text NOT NULL,
	`device_id` text NOT NULL,
	`created_at` integer DEFAULT (unixepoch() * 1000) NOT NULL,
	`revoked_at` integer,
	`revoke_reason` text,
	FOREIGN KEY (`user_id`) REFERENCES `users`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE INDEX `token_families_user_idx` ON `token_families` (`user_id`,`device_id`);--> statement-breakpoint
CREATE TABLE `totp_secrets` (
	`user_id` text PRIMARY KEY NOT NULL,
	`secret_enc` blob NOT NULL,
	`enabled_at` integer,
	`last_step` integer DEFAULT 0 NOT NULL,
	FOREIGN KEY (`user_id`) REFERENCES `users`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE TABLE `users` (
	`id` text PRIMARY KEY NOT NULL,
	`username` text NOT NULL,
	`identity_key` blob NOT NULL,
	`identity_version` integer DEFAULT 1 NOT NULL,
	`password_hash` blob NOT NULL,
	`password_salt` blob NOT NULL,
	`password_params` text NOT NULL,
	`created_at` integer DEFAULT (unixepoch() * 1000) NOT NULL
);
--> statement-breakpoint
CREATE UNIQUE INDEX `users_username_uq` ON `users` (`username`);--> statement-breakpoint
CREATE TABLE `ws_tickets` (
	`ticket_hash` blob PRIMARY KEY NOT NULL,
	`user_id` text NOT NULL,
	`device_id` text NOT NULL,
	`family_id` text NOT NULL,
	`conversation_id` text NOT NULL,
	`expires_at` integer NOT NULL
);
--> statement-breakpoint
CREATE INDEX `ws_tickets_expiry_idx` ON `ws_tickets` (`expires_at`);