"""The Discord front end (discord.py 2.7): slash and context-menu commands, the job's interaction response
as its status, delivery of results. Needs no privileged gateway intents."""
