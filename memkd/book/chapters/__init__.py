"""One module per chapter: what a reader of that chapter needs to check, in one place.

Each module holds its chapter's story on top of the experiment it runs: the claims it records on a
`memkd.book.chapter.Chapter` (with the margins fixed before the run), its departures from the paper
(the rows' wording stays in `memkd/book/departures.yml`, keyed by chapter) and the outcome sentences
chosen by its verdicts. The experiments under them only return tables (`memkd.experiments`); the
shared helpers stay in `memkd.book.outcomes` (`outcome`, `find`, `numbers`) and
`memkd.book.departures` (`departure_row`, `standard_departures`, ..., and `for_chapter`, which
dispatches to the modules here).

    ch01_toy_2d              the 2-D toy (Fig 1): claims, outcome sentences, departures against the toy's sizes
    ch02_logit_distillation  logit distillation (Fig 2): claims, the capacity sentence, departures with the grid
    ch03_similarity_scores   similarity scores (Fig 3): claims, departures
    ch04_cifar10             CIFAR-10 shuffles (section 3.3): claims, the fixed-permutation check, outcome sentence,
                             departures
    ch05_temperature_lr      temperature x learning rate (Fig 5): claims, optima, outcome sentences, the second clock
    ch06_dataset_composition dataset composition (Fig 6): claims, white and grey cells, departures with the grid
    ch07_logit_surgery       logit surgery (Fig 7): claims, outcome sentences, departures with the grid
    ch08_transformer         chapter 08: the workshop setting's claim and closing sentences; the teacher clock's
                             claims, margin and closing text; the departures of both
    ch09_open_questions      the open questions: each question's claims and margins, sentences, figure helpers
    ch10_convolutions        convolutions: claims, where the paper's remark holds, departures
    ch11_linear_recovery     the recovery threshold of linear teachers (the published Fig 3)
    ch12_temperature_window  the temperature window (the published Fig 4a, App. Fig 13)
    ch13_one_hidden_layer    one hidden layer's phases: the claims on the chosen cells, the surgery, the closing note
    ch14_defences            the defences: the frontier's analysis, figure, claims, closing lines, departures
    ch15_language_model      GPT-2 and random facts: claims, departures
    ch16_class_scaling       the class scaling (the published Fig 4b, App. Fig 13)

Every chapter's claims are recorded by a function here (on the statistics of `memkd.book.grid_analysis`).
A notebook calls one function per
block of claims and displays the sentences it returns; it never calls `Chapter.claim*` itself
(`tests/test_chapter_modules.py` checks).
"""
