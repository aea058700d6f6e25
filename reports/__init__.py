"""Reports over the asv results in results/: tidy CSV, <machine>_latest.txt, plots, HTML,
and noise-aware regression detection. Reads JSON only: never imports torch or triton.

Modules: metrics (units, directions, thresholds), load (asv JSON -> DataFrame), regress
(detection), text, plots, html, publish (asv's own HTML, offline), cli (python -m reports).
"""
