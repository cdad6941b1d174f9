from jobs.common.stepctx import main
from jobs.gguf.run import run_step

main("gguf", run_step)
