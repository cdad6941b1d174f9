"""The pack step: read datasets and eval results, filter, dedupe, convert and split them.

    FT_SPEC_FILE=run.json FT_STORE_URI=file:///tmp/store python -m jobs.pack

Writes train.jsonl, val.jsonl, test.jsonl (in steps.pack.format) and report.json.
"""
