"""The bottom layer: the exception tree and the settings every other layer reads."""
