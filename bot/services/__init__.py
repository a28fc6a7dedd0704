"""The bot's rules, free of Telegram: what a job needs, limits, presets, preferences, albums.

Handlers translate Telegram updates into calls here and the results back into messages; nothing in this
package imports ``telegram``.
"""
