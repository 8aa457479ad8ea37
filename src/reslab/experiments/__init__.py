"""The paper's experiments as functions that train their sub-runs and write a report folder
(``report.md``, ``report.html``, PNG figures, CSV of every number):

- :mod:`~reslab.experiments.degradation`: plain vs residual nets (Fig. 6, Table 2);
- :mod:`~reslab.experiments.depth_table`: test error against depth (Table 6);
- :mod:`~reslab.experiments.layer_responses`: per-layer response std (Fig. 7);
- :mod:`~reslab.experiments.shortcuts`: shortcut options A, B, C (Table 3).

Sub-runs are ordinary run folders (:mod:`~reslab.experiments.runs`), so an interrupted
experiment resumes where it stopped; reports are drawn by :mod:`~reslab.experiments.report`.
"""
