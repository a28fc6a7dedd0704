"""Stylebot's style-transfer engine (Gatys, Ecker and Bethge) and its workers.

Importing this package is cheap: torch is imported only by the modules that compute
(``vgg``, ``losses``, ``optimize``, ``api``), never by ``protocol``, ``errors``, ``settings`` or ``catalog``.
"""
