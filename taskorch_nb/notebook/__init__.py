"""The notebook front end: magics, live widgets, plain-text dashboard."""
