"""One pane per module. Each pane has a ``current`` View set on it and never queries its siblings."""
