"""The Textual terminal UI: ``make_app(engine_factory)`` builds it for the CLI, tests and screenshots.

Nothing under ``lmscope.tui`` imports torch: every engine call runs in a thread worker, and the
panes only read the frozen CPU records the engine returns.
"""
