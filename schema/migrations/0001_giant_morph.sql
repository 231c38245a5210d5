CREATE TABLE `attachments` (
	`id` text PRIMARY KEY NOT NULL,
	`conversation_id` text NOT NULL,
	`uploader_user_id` text NOT NULL,
	`size` integer NOT NULL,
	`created_at` integer NOT NULL,
	`uploaded_at` integer
);
--> statement-breakpoint
CREATE INDEX `attachments_uploader_idx` ON `attachments` (`uploader_user_id`,`created_at`);--> statement-breakpoint
CREATE INDEX `attachments_created_idx` ON `attachments` (`created_at`);