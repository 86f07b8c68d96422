"""What a run leaves on disk: output names and files, claims, run logs."""
