from jobs.common.stepctx import main
from jobs.pack.run import run_step

main("pack", run_step)
