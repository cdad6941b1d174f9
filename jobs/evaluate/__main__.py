from jobs.common.stepctx import main
from jobs.evaluate.run import run_step

main("evaluate", run_step)
