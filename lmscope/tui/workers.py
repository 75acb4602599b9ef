"""Every engine call, each in a thread worker; results go back to the UI thread as Messages.

Only these workers touch the engine (and so torch and the KV cache). They never read or write
app state: what they need comes in as arguments, and what they learn goes out through
``post_message``, which is thread-safe. Exceptions become ``EngineFailed`` messages, so a failed
step leaves the app running with its history.
"""

from __future__ import annotations

import threading

from textual import work

from lmscope.engine.protocol import Engine, EngineFactory
from lmscope.tui.messages import EngineFailed, ModelLoaded, PromptEncoded, RunStopped, StepCompleted


class EngineWorkers:
    """Mixin for the app: the worker methods, all in the ``engine`` group.

    Never ``exclusive=True``: cancelling a thread worker does not stop it, so a cancelled step
    would still run and race the next one on the same cache. The app gates with ``busy``.
    """

    @work(thread=True, group="engine", exit_on_error=False)
    def load_engine(self, factory: EngineFactory) -> None:
        """Load the model (slow), then encode the prompt."""
        try:
            engine = factory()
            self.post_message(ModelLoaded(engine, engine.info))
            prompt = engine.start()
        except Exception as error:  # shown in the app; the worker must not take the app down
            self.post_message(EngineFailed(error, "load"))
            return
        self.post_message(PromptEncoded(prompt))

    @work(thread=True, group="engine", exit_on_error=False)
    def start_engine(self, engine: Engine) -> None:
        """Encode the prompt again (restart)."""
        try:
            prompt = engine.start()
        except Exception as error:
            self.post_message(EngineFailed(error, "start"))
            return
        self.post_message(PromptEncoded(prompt))

    @work(thread=True, group="engine", exit_on_error=False)
    def run_steps(self, engine: Engine, limit: int | None, pause: threading.Event) -> None:
        """Step ``limit`` times (None: until finished), stopping at a step boundary once ``pause`` is set.

        Args:
            engine: the engine; no other thread calls it while this runs.
            limit: how many steps at most.
            pause: checked before each step after the first, so a pause never interrupts a step.
        """
        done = 0
        try:
            while not engine.finished and (limit is None or done < limit):
                if done and pause.is_set():
                    break
                self.post_message(StepCompleted(engine.step()))
                done += 1
            finished = engine.finished
        except Exception as error:
            self.post_message(EngineFailed(error, "step"))
            return
        self.post_message(RunStopped(finished=finished, paused=pause.is_set() and not finished))
