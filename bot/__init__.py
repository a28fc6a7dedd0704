"""Stylebot: a Telegram and Discord bot that paints photos in the style of famous paintings.

A platform-neutral core (services, the job queue, the notifier) with one package per chat platform
(``bot.telegram``, ``bot.discord``). Never imports torch: the engine runs in worker processes."""
