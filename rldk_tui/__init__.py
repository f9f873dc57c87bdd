"""rldk-tui: the Textual front end of rldk. It renders and controls; rldk_engine computes."""

__version__ = "0.1.0"
