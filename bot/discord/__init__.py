"""The Discord front end (discord.py 2.7); needs no privileged gateway intents.

One module per feature, each with its commands and the buttons or views they put up: ``paint`` (/paint,
/surprise, "Paint this"), ``figures`` (/strip, /layers, /forming, the buttons under a result),
``presets`` (/preset), ``settings`` (/settings), ``queue`` (/queue, /cancel, the Cancel button),
``sketch`` ("Keep the sketch"), ``styles`` (/styles, "Use as my style", naming a style), ``clips`` (/clip),
``admin`` (/admin, /bot, the Delete button). Under them: ``jobs`` (a request becomes a job whose status is
the interaction's response), ``attachments`` and ``common``; ``frontend`` is the ``bot.frontend.Frontend``
the notifier calls, ``messages`` its sends (result, animation, a word for the owner: follow-up, channel,
DM); ``failures`` says what each of Discord's failures means (passing, refused, token refused), retried
through ``bot.retrying``; ``app`` is the (auto-sharded) client; ``sync`` uploads the commands only when
their definition changed; ``translator`` gives the commands their Russian names from ``bot/texts``;
``markdown`` turns the core's texts into Discord's Markdown, every name people gave escaped.
The rules are the core's (``bot.services``); these modules parse, call one service and answer.
"""
