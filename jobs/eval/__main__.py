from jobs.common.stepctx import main
from jobs.eval.run import run_step

main("eval", run_step)
