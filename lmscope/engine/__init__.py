"""The model-running core of lmscope. Imports no textual, rich or plotext."""
