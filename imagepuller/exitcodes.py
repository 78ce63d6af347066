"""The process's exit codes, shared by the CLI and the controller loop."""

OK = 0  # success, also after SIGTERM/SIGINT
CONFIG = 1  # bad configuration (ours or the API's verdict) or no credentials
# `render` or `check` could not write all their output (a closed pipe, a full disk): 1, as
# Python itself exits when its output pipe closes.
OUTPUT = 1
USAGE = 2  # bad command line (argparse's own code)
