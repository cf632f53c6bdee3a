"""One pipeline's threads, and building a pipeline from settings with its start-up checks."""
