"""What the book needs on top of the experiments: the layer the notebooks and the site stand on.

chapter     a chapter's parameters, results folder, claims and departures (`Chapter`)
claims      one claim's record and how its numbers are written (`Claim`, `units_text`)
departures  every chapter's departures from the paper or the released code (`for_chapter`)
plan        what a claim fixes before its run: margins with reasons, power plans, baselines
outcomes    outcome sentences chosen by a build's verdicts, and where it contradicts the paper
plots       figures with error bars over teachers
widgets     the interactive explorers
chapters    one module per chapter: its claims, outcome sentences and departures (09: the open questions)
grid_analysis  the statistics of chapters 05-07 beyond a per-teacher mean (best cells chosen on other teachers)
build       the two-stage build: execute the notebooks, then render the site
report      the reproduction report: claims, departures and provenance gathered from a build
sphinx_ext  a Sphinx extension: pages that ask for no launch buttons get none
"""
