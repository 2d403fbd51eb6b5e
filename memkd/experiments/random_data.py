"""The random-data experiments' shared config, profiles and loop (figures 2, 3, 5, 6, 7 and the questions).

Owns `RandomDataConfig` (the knobs of D, its teacher and its students, checked before any work, the
memory check included), the paper's main sizes (`PAPER_SIZES`) and the profiles the random-data
experiments start from (`SMOKE_PROFILE`, `QUICK_PROFILE`, `PAPER_PROFILE`), and `alpha_width_settings`,
the loop of Figs 2, 3 and 5. The data flow under it is the core's: `memkd.memorization` (D, D', the
teachers, the alpha split) -> `memkd.students` (`distill`: the students as one ensemble, one row each)
-> `memkd.tables.tidy`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Iterator

from memkd.config import (
    ExperimentConfig,
    alphas_knob,
    batch_size_knob,
    check_split,
    classes_knob,
    epochs_knob,
    hidden_layers_knob,
    input_dim_knob,
    knob,
    lr_knob,
    lrs_knob,
    one_of,
    per_class_knob,
    soften_student_knob,
    student_widths_knob,
    students_knob,
    teacher_epochs_knob,
    teacher_stop_knob,
    teacher_width_knob,
    teachers_knob,
    temperatures_knob,
)
from memkd.declare import DISTILL_COLUMNS
from memkd.device import resolve_device
from memkd.memorization import MemorizationTask, StudentShapes, check_memorization_fits, memorization_tasks, split


@dataclass(frozen=True)
class RandomDataConfig(ExperimentConfig):
    """Knobs shared by the random-data experiments (figures 2, 3, 5, 6, 7)."""

    TABLE_COLUMNS = DISTILL_COLUMNS
    SINGLE_VALUED: ClassVar[tuple] = ()  # list knobs that must hold exactly one value (e.g. Figs 6, 7)
    SIMILARITY_STUDENTS: ClassVar[bool] = False  # some students learn pairwise similarities (Fig 3, Q1)

    input_dim: int = input_dim_knob(250)
    classes: int = classes_knob(50)
    per_class: int = per_class_knob(25)
    distribution: str = knob("uniform", one_of("uniform", "gaussian"), "input distribution")
    teacher_width: int = teacher_width_knob(125)
    hidden_layers: int = hidden_layers_knob(2)
    activation: str = knob("relu", one_of("relu", "tanh", "linear"), "hidden activation")
    teacher_lr: float = lr_knob(1e-3, "teacher's")
    teacher_epochs: int = teacher_epochs_knob(1000)
    teacher_stop: str = teacher_stop_knob()
    student_widths: tuple = student_widths_knob((125,))
    alphas: tuple = alphas_knob((0.6,))
    temperatures: tuple = temperatures_knob((10.0,))
    lrs: tuple = lrs_knob((3e-3,))
    epochs: int = epochs_knob(200)
    students: int = students_knob(5, "teacher and setting")
    teachers: int = teachers_knob(1)
    soften_student: bool = soften_student_knob()
    batch_size: Any = batch_size_knob("teacher's and students'")

    def check(self) -> None:
        check_split(self, self.alphas, self.per_class)
        self.check_single_valued()

    def check_resources(self) -> None:
        """The device exists and one teacher and one student of the widest width fit in its memory
        at the config's own sizes (input_dim, classes, per_class), before any work."""
        super().check_resources()
        check_memorization_fits(
            self,
            resolve_device(self.device, self.experiment),
            input_dim=self.input_dim,
            classes=self.classes,
            per_class=self.per_class,
            hidden_layers=self.hidden_layers,
            teacher_width=self.teacher_width,
        )

    def student_shapes(self) -> StudentShapes:
        """The students' widths and shares of D (`student_widths`, `alphas`), and whether some learn
        similarities (`SIMILARITY_STUDENTS`); a config whose students differ overrides it."""
        return StudentShapes(self.student_widths, self.alphas, self.SIMILARITY_STUDENTS)

    def check_single_valued(self) -> None:
        """Fail the first knob of SINGLE_VALUED that holds more than one value."""
        for name in self.SINGLE_VALUED:
            if len(getattr(self, name)) != 1:
                self.fail(
                    name, f"must hold exactly one value for {self.experiment}. Got {getattr(self, name)!r} instead."
                )


# The sizes of the paper's main setting (Fig 2); the departures from them: memkd.book.departures.
PAPER_SIZES = {"input_dim": 1000, "classes": 100, "per_class": 100, "teacher_width": 500}
# The random-data figures' profiles (memkd.experiments.fig2_logits ... fig7_surgery; the open questions
# start from them too): the smallest setting that shows each effect in seconds (tests), a CPU book
# (quick), and the paper's main setting (Fig 2) with the released code's teacher protocol. Teachers are
# the unit of replication: at least 3 per claim at smoke, 5 at quick and paper. Every teacher trains
# for its whole budget (the paper's protocol): about 3x the epochs the smoke and quick teachers need to
# reach 100% (45 and 90, measured); the paper profile keeps the released code's 2000.
SMOKE_PROFILE = dict(
    input_dim=100,
    classes=10,
    per_class=20,
    teacher_width=50,
    teacher_lr=3e-3,
    teacher_epochs=150,
    student_widths=(50,),
    alphas=(0.6,),
    temperatures=(20.0,),
    lrs=(1e-2,),
    epochs=100,
    students=3,
    teachers=4,
)
QUICK_PROFILE = dict(
    input_dim=250,
    classes=50,
    per_class=25,
    teacher_width=125,
    teacher_lr=1e-3,
    teacher_epochs=300,
    student_widths=(125,),
    alphas=(0.6,),
    temperatures=(10.0,),
    lrs=(3e-3,),
    epochs=200,
    students=2,
    teachers=5,
)
PAPER_PROFILE = dict(
    PAPER_SIZES,
    teacher_lr=1e-3,
    teacher_epochs=2000,
    student_widths=(500,),
    alphas=(0.6,),
    temperatures=(20.0,),
    lrs=(1e-3,),
    epochs=1000,
    students=4,
    teachers=5,
)


def alpha_width_settings(cfg: RandomDataConfig) -> Iterator[tuple[list[MemorizationTask], float, list, int]]:
    """Train every dataset's teacher (one ensemble), then yield (tasks, alpha, splits, width) for every
    alpha and student width: the loop of Figs 2, 3 and 5, whose students of one (alpha, width) train
    as one ensemble over all datasets."""
    tasks = memorization_tasks(cfg)
    for alpha in cfg.alphas:
        splits = [split(task, alpha, cfg) for task in tasks]
        for width in cfg.student_widths:
            yield tasks, alpha, splits, width
