"""The train step: SFT (TRL SFTTrainer), DPO (TRL DPOTrainer) and sequence classification, with
LoRA/QLoRA via peft, checkpoints in the store and resume after a restart.

    FT_SPEC_FILE=run.json FT_STORE_URI=file:///tmp/store python -m jobs.train
"""
