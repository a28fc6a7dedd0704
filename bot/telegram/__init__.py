"""The Telegram front end: handlers, the status message, delivery of results."""
