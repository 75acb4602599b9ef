"""lmscope: a step debugger for language-model text generation."""

__version__ = "0.1.0"
