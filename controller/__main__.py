"""python -m controller: the same as `ftctl controller`, with the same flags."""

import argparse
import sys

from jobs.cli.cmd_controller import HELP, add_arguments, run

parser = argparse.ArgumentParser(prog="python -m controller", description=HELP)
add_arguments(parser)
sys.exit(run(parser.parse_args()))
