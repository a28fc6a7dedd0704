"""Stylebot's Telegram front end. Never imports torch."""
