"""The offline evaluator: every method of docs/method.md section 2 on recorded test exits, plus report and plots."""
