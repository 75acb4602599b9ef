"""Architecture seams: the engine never imports UI libraries; `lmscope --help` never imports torch."""

from __future__ import annotations

import subprocess
import sys

ENGINE_MODULES = ["attention", "cache_stats", "generation", "models", "processors", "records", "session",
                  "settings", "stepper", "step_parts", "tensors", "trace", "protocol", "errors"]


def modules_after(code: str) -> set[str]:
    script = f"{code}\nimport sys\nprint('\\n'.join(sys.modules))"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    return set(done.stdout.split())


def test_engine_imports_no_ui_library():
    imports = "\n".join(f"import lmscope.engine.{name}" for name in ENGINE_MODULES)
    loaded = modules_after(imports + "\nimport lmscope.headless")
    assert "torch" in loaded  # the check can fail: the engine really was imported
    assert not {"textual", "rich", "plotext", "textual_plotext"} & {m.split(".")[0] for m in loaded}


def test_help_does_not_import_torch():
    loaded = modules_after("from lmscope.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass")
    assert "lmscope.cli" in loaded
    assert "torch" not in loaded and "transformers" not in loaded and "textual" not in loaded
