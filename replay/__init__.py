"""Replay for analysts: rebuild, audit, compare, disclose prices, and ask "what if".

Every command reads a journal read-only through the one recovery path
(`recorder.recovery.rebuild`); see replay/cli.py for ``lotex replay ...``
and ``lotex whatif``.
"""
