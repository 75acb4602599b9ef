"""Pure drawing: records and numbers to Segments and Strips (heatmaps, the plot canvas, the stage
table, token layout, attention rows). No widgets and no app state, so each is unit-tested directly."""
