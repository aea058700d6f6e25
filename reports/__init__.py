"""Reports over the asv results in results/: tidy CSV, <machine>_latest.txt, plots, HTML,
and noise-aware regression detection. Reads JSON only: never imports torch or triton.

Code only: the outputs go to the top-level report/ folder (``python -m reports --out``).

Modules: metrics (units, directions, thresholds), load (asv JSON -> DataFrame), regress
(detection), tables (the latest view and its per-config table, shared by the renderers),
text, plots, html, publish (asv's own HTML, offline), cli (python -m reports).
"""
