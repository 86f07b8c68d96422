"""What the command line's exit code says (README, Exit codes)."""
EXIT_DONE, EXIT_FAILED, EXIT_BAD_OPTIONS = 0, 1, 2  # stopped by a signal: 128 + its number (utils/cli/)
EXIT_READER_GONE = 128 + 13  # the reader of the printed features went away: SIGPIPE's code
