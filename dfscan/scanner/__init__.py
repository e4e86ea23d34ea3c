"""What a user runs: the CLI, media, faces, tracking, crops, the scan pipeline and its report."""

from dfscan import __version__

__all__ = ["__version__"]
