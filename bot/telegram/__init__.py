"""The Telegram front end (python-telegram-bot 22).

``app`` builds the Application and runs it: ``polling`` (our own getUpdates loop, which confirms an update
only once its handler finished, so a killed bot loses no photo) or ``webhook`` (the bot's own aiohttp
server, 403 without the secret). ``handlers/<feature>`` parse, call one service and answer; ``status``
keeps each job's status message (the ``StatusBoard``); ``frontend`` is the ``bot.frontend.Frontend`` the
notifier calls (results, animations, clips); ``failures`` says what each of Telegram's failures means
(passing, unreachable, gone), retried through ``bot.retrying``; ``request`` turns a 5xx page into one
warning instead of PTB's traceback; ``buttons`` builds every inline keyboard.
"""
