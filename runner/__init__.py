"""Entry points that run the asv suite: one commit or a history (``asv_run``), shards over
local GPUs or Modal containers (``shards``, ``local_gpus``, ``merge``, modal_runner.py at
the top), on one git helper (``git``) and one machine module (``machine``)."""
