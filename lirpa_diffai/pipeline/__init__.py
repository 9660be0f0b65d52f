"""What the commands run: loading any model, certifying a run, exporting it."""
