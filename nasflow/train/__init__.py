"""Training loops: search (supernet + alphas), retrain (derived cell), evaluate."""
