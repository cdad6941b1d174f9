"""An OpenAI-compatible fine-tuning API (files, fine_tuning.jobs) in front of the local runner."""
