"""The evaluate step: base vs tuned model on the test split, a report and a promotion gate."""
