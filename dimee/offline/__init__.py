"""The offline half: training the early-exit encoder, the train → record → calibrate → evaluate workflow over a
work folder, the evaluator and its reports, longer experiments and measured costs."""
