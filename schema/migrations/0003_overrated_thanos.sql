ALTER TABLE `refresh_tokens` ADD `generation` integer DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE `token_families` ADD `generation` integer DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE `token_families` ADD `generation_at` integer;--> statement-breakpoint
ALTER TABLE `token_families` ADD `head_token_hash` blob;