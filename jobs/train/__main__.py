from jobs.common.stepctx import main
from jobs.train.run import run_step

main("train", run_step)
