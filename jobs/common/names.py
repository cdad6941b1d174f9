"""Names shared by every part: step order, API group, label keys.

Kept import-free so the planner, the controller and the steps agree without
pulling each other in.
"""

GROUP = "finetune.dev"
VERSION = "v1alpha1"
KIND = "FineTuneRun"
PLURAL = "finetuneruns"
SHORT_NAME = "ftr"
API_VERSION = f"{GROUP}/{VERSION}"

# The pipeline order. A run executes the subset its spec enables, in this order.
STEP_ORDER: tuple[str, ...] = ("eval", "pack", "train", "evaluate", "gguf")

LABEL_RUN = f"{GROUP}/run"
LABEL_STEP = f"{GROUP}/step"
LABEL_QUEUE = "kueue.x-k8s.io/queue-name"
