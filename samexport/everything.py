"""Everything mode's command-line options: the official SamAutomaticMaskGenerator defaults (for the CLI
and segment) and the ranges samexport runs (a grid above 128 per side or more than 3 crop layers is
millions of decodes). Kept free of heavy imports: `samexport --help` reads it."""

EVERYTHING_DEFAULTS = {
    "points_per_side": 32,
    "pred_iou_thresh": 0.88,
    "stability_score_thresh": 0.95,
    "crop_n_layers": 0,
}
EVERYTHING_RANGES = {"points_per_side": (1, 128), "crop_n_layers": (0, 3)}
# Score filters keep masks scoring above a fraction: 0 turns one off (as in the official generator); past 1
# nothing could pass.
EVERYTHING_FRACTIONS = ("pred_iou_thresh", "stability_score_thresh")
