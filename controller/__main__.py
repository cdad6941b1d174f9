"""python -m controller: the same as `ftctl controller`."""

from controller.operator import main

main()
