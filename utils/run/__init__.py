"""A run over a list of videos, as the command line does it: inputs, delivery, report."""
