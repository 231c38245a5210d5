CREATE TABLE `linking_tokens` (
	`token_hash` blob PRIMARY KEY NOT NULL,
	`user_id` text NOT NULL,
	`issued_by` text NOT NULL,
	`channel_id` text NOT NULL,
	`expires_at` integer NOT NULL,
	`used_at` integer,
	`used_by` text,
	FOREIGN KEY (`user_id`) REFERENCES `users`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE INDEX `linking_tokens_user_idx` ON `linking_tokens` (`user_id`);--> statement-breakpoint
CREATE INDEX `linking_tokens_expiry_idx` ON `linking_tokens` (`expires_at`);--> statement-breakpoint
ALTER TABLE `devices` ADD `name_enc` blob;