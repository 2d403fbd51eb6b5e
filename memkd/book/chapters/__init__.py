"""One module per chapter: what a reader of that chapter needs to check, in one place.

Each module holds its chapter's story on top of the experiment it runs: the claims it records on a
`memkd.book.chapter.Chapter` (with the margins fixed before the run), its departures from the paper
(the rows' wording stays in `memkd/book/departures.yml`, keyed by chapter) and the outcome sentences
chosen by its verdicts. The experiments under them only return tables (`memkd.experiments`); the
shared helpers stay in `memkd.book.outcomes` (`outcome`, `find`, `numbers`) and
`memkd.book.departures` (`departure_row`, `standard_departures`, ..., and `for_chapter`, which
dispatches to the modules here).

    ch08_transformer         chapter 08: the workshop setting's closing sentences; the teacher clock's
                             claims, margin and closing text; the departures of both
    ch11_linear_recovery     the recovery threshold of linear teachers (the published Fig 3)
    ch12_temperature_window  the temperature window (the published Fig 4a, App. Fig 13)
    ch13_one_hidden_layer    one hidden layer's phases: the claims on the chosen cells, the surgery, the closing note
    ch16_class_scaling       the class scaling (the published Fig 4b, App. Fig 13)

The other chapters' departures and outcome sentences are still in `memkd.book.departures` and
`memkd.book.outcomes` (chapter 09's verdicts in `memkd.book.questions`), their claims in their notebooks.
"""
