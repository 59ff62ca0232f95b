"""Downstream evaluation by fine-tuning: GLUE as the ModernBERT paper reports it, and a
local task for offline checks.

    python -m modernbert.eval glue --model HF_DIR --tasks mnli,sst2 --seeds 3 [--data DIR]
    python -m modernbert.eval make-code-prose --output DIR

The model is the exported Hugging Face folder, fine-tuned through transformers'
`ModernBertForSequenceClassification`: the same weights and code path a user of the
exported model gets (one source of truth). Tasks and their recipe live in `tasks.py`.
"""
