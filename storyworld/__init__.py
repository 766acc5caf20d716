"""StoryWorld: story scripts in, rendered video episodes out, on a fleet of GPU workers."""

__version__ = "0.1.0"
