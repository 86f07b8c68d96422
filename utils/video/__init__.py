"""Reading videos: decoding (whole or in segments), frame numbering, the re-encode, the decoding processes."""
